"""Start, wait for, and stop a real tritonserver process from the nvidia-pytriton wheel."""
from __future__ import annotations

import contextlib
import glob
import importlib.util
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import tritonclient.grpc as triton_grpc
from tritonclient.utils import InferenceServerException

from services.embedded_triton.settings import REPO_ROOT, TritonSettings

#: Triton APIs that change the server or read its memory: restricted to ADMIN_HEADER
#: (health, metadata, model-config, inference and statistics stay open to the services,
#: Prometheus and the tests).
ADMIN_APIS = "model-repository,logging,trace,shared-memory"
ADMIN_HEADER = "triton-admin-key"

log = logging.getLogger(__name__)



class TritonStartError(RuntimeError):
    pass


@dataclass(frozen=True)
class ModelState:
    """A model's load state in Triton's repository index (READY, UNAVAILABLE, LOADING, ...)."""

    state: str
    reason: str


UNKNOWN = ModelState("", "")


@dataclass(frozen=True)
class TritonInstallation:
    """Where the pytriton wheel keeps the server, its libraries and backends."""

    binary: Path
    libs: Path
    python_backend: Path
    stub: Path

    @classmethod
    def find(cls) -> TritonInstallation:
        # Locate, don't import: importing pytriton pulls in zmq, sh and typer.
        spec = importlib.util.find_spec("pytriton")
        if spec is None or not spec.submodule_search_locations:
            raise TritonStartError("nvidia-pytriton is not installed (pip install nvidia-pytriton)")
        package = Path(list(spec.submodule_search_locations)[0])
        root = package / "tritonserver"
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        inst = cls(
            binary=root / "bin" / "tritonserver",
            libs=package.parent / "nvidia_pytriton.libs",
            python_backend=root / "backends" / "python",
            stub=root / "python_backend_stubs" / version / "triton_python_backend_stub",
        )
        for path in (inst.binary, inst.libs, inst.python_backend, inst.stub):
            if not path.exists():
                raise TritonStartError(f"missing from the nvidia-pytriton wheel: {path}")
        return inst

    def backend_directory(self, into: Path) -> Path:
        """A backend folder holding python/{libtriton_python.so, utils, stub for this Python}."""
        python_dir = into / "python"
        python_dir.mkdir(parents=True, exist_ok=True)
        for src in (
            self.python_backend / "libtriton_python.so",
            self.python_backend / "triton_python_backend_utils.py",
            self.stub,
        ):
            dst = python_dir / src.name
            if not dst.exists():
                dst.symlink_to(src)
        return into


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def leftover_shm_regions(prefix: str) -> list[str]:
    return glob.glob(f"/dev/shm/{glob.escape(prefix)}*")


class EmbeddedTriton:
    """A tritonserver child process. Use as a context manager or call start()/stop()."""

    def __init__(self, settings: TritonSettings | None = None, log_path: Path | None = None):
        self.settings = settings or TritonSettings()
        s = self.settings
        self.host = s.host
        self.grpc_port = s.grpc_port or free_port(s.host)
        self.http_port = s.http_port or free_port(s.host)
        self.metrics_port = s.metrics_port or free_port(s.host)
        self.log_path = log_path
        self.process: subprocess.Popen | None = None
        self._workdir: Path | None = None  # per run: made by command(), removed by _cleanup()
        # Our own shared-memory prefix, so cleaning up after a kill touches only the
        # regions of this server (others may run on the same machine).
        self.shm_prefix = f"prelabel_{os.getpid()}_{self.grpc_port}_"
        self.admin_key = secrets.token_urlsafe(24)  # per launch; see admin_headers
        self._log_file: IO[bytes] | None = None
        self.unavailable: dict[str, str] = {}  # model -> Triton's reason, set by wait_ready()

    @property
    def admin_headers(self) -> dict[str, str]:
        """HTTP headers that admit a caller to the restricted APIs."""
        return {ADMIN_HEADER: self.admin_key}

    @property
    def admin_grpc_metadata(self) -> tuple[tuple[str, str], ...]:
        """gRPC metadata that does the same (Triton prefixes the key on gRPC)."""
        return ((f"triton-grpc-protocol-{ADMIN_HEADER}", self.admin_key),)

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"

    def command(self) -> list[str]:
        s = self.settings
        inst = TritonInstallation.find()
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="prelabel-triton-"))
        cmd = [
            str(inst.binary),
            f"--model-repository={s.model_repository}",
            *([f"--model-repository={s.user_model_repository}"] if s.user_model_repository.is_dir() else []),
            f"--backend-directory={inst.backend_directory(self._workdir / 'backends')}",
            f"--grpc-address={s.host}", f"--grpc-port={self.grpc_port}",
            # HTTP only when asked for: the services and readiness use gRPC, and every
            # endpoint open is one more a local user holding the admin key could use.
            f"--allow-http={'true' if s.allow_http else 'false'}",
            f"--http-address={s.host}", f"--http-port={self.http_port}",
            "--allow-metrics=true", "--allow-gpu-metrics=false",
            f"--metrics-address={s.host}", f"--metrics-port={self.metrics_port}",
            f"--exit-timeout-secs={s.exit_timeout_s}",
            "--strict-readiness=true",
            # A user model that fails to load must not take the built-in ones down with it:
            # wait_ready() fails on the models it requires and reports the others.
            "--exit-on-error=false",
            f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}",
            f"--log-verbose={s.log_verbose}",
            # Admin endpoints (model repository, logging, trace settings, shared-memory
            # registration) need this launch's key: any local process can reach the ports.
            f"--http-restricted-api={ADMIN_APIS}:{ADMIN_HEADER}={self.admin_key}",
            f"--grpc-restricted-protocol={ADMIN_APIS}:{ADMIN_HEADER}={self.admin_key}",
        ]
        if s.models:
            cmd.append("--model-control-mode=explicit")
            cmd += [f"--load-model={m}" for m in s.models]
        else:
            cmd.append("--model-control-mode=none")
        if s.profile != "cpu":
            cmd.append(f"--model-config-name={s.profile}")
        return cmd

    def environment(self) -> dict[str, str]:
        inst = TritonInstallation.find()
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (str(inst.libs), env.get("LD_LIBRARY_PATH", "")) if p
        )
        # The Python-backend stubs embed their own interpreter: give them this checkout
        # (services.modelkit) and this interpreter's packages (torch, facenet-pytorch).
        # The stub finds its packages through the `python3` first on PATH.
        paths = [str(REPO_ROOT), env.get("PYTHONPATH", "")]
        env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
        env["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), env.get("PATH", "")))
        env["PRELABEL_ALLOW_RANDOM_WEIGHTS"] = "1" if self.settings.allow_random_weights else "0"
        return env

    def start(self) -> EmbeddedTriton:
        if self.process is not None:
            raise TritonStartError("already started")
        cmd = self.command()
        log.info("starting tritonserver: %s", " ".join(cmd))
        out: int | IO[bytes] = subprocess.DEVNULL
        if self.log_path is not None:
            self._log_file = open(self.log_path, "ab")  # noqa: SIM115  # closed in _cleanup()
            out = self._log_file
        self.process = subprocess.Popen(
            cmd, env=self.environment(), stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in a terminal reaches us, we stop Triton in order
        )
        self.wait_ready(self.settings.startup_timeout_s)
        return self

    def required_models(self) -> list[str]:
        """The models the suite cannot run without: the configured list, else every model
        of model_repository. A user model outside them that fails to load is reported,
        not fatal."""
        if self.settings.models:
            return list(self.settings.models)
        return sorted(p.name for p in self.settings.model_repository.iterdir()
                      if p.is_dir() and not p.name.startswith("."))

    def model_states(self) -> dict[str, ModelState] | None:
        """Every model of the repositories with its load state and Triton's reason (the
        repository index: an admin API, asked with this launch's key); None while Triton
        does not answer."""
        client = triton_grpc.InferenceServerClient(self.grpc_url)
        try:
            index = client.get_model_repository_index(headers=dict(self.admin_grpc_metadata), as_json=True,
                                                      client_timeout=2)
        except InferenceServerException:
            return None
        finally:
            client.close()
        return {m["name"]: ModelState(m.get("state", ""), m.get("reason", "")) for m in index.get("models", [])}

    def is_ready(self) -> bool:
        """Every required model ready (see wait_ready)."""
        states = self.model_states()
        return states is not None and all(states.get(m, UNKNOWN).state == "READY" for m in self.required_models())

    def wait_ready(self, timeout_s: float) -> None:
        """Until every required model is READY. One that failed to load ends the wait at
        once with Triton's reason; any other model that failed (a user model) is logged
        with its reason and listed in `self.unavailable`, and the rest are served."""
        assert self.process is not None, "wait_ready() after start()"
        deadline = time.monotonic() + timeout_s
        required = self.required_models()
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise TritonStartError(
                    f"tritonserver exited with code {self.process.returncode} while starting"
                    + (f"; see {self.log_path}" if self.log_path else "")
                )
            states = self.model_states()
            if states is not None:
                failed = [m for m in required if states.get(m, UNKNOWN).state == "UNAVAILABLE"]
                if failed:
                    self.stop()
                    raise TritonStartError("models failed to load: " + "; ".join(
                        f"{m}: {states[m].reason or 'no reason given'}" for m in failed))
                if all(states.get(m, UNKNOWN).state == "READY" for m in required):
                    self.unavailable = {m: s.reason for m, s in states.items() if s.state == "UNAVAILABLE"}
                    for name, reason in self.unavailable.items():
                        log.warning("model %s failed to load and is not served (the others are): %s", name, reason)
                    log.info("tritonserver ready: grpc %s, metrics %s", self.grpc_url, self.metrics_url)
                    return
            time.sleep(0.25)
        self.stop()
        raise TritonStartError(f"tritonserver not ready after {timeout_s:.0f}s")

    def stop(self, timeout_s: float | None = None) -> int | None:
        """SIGTERM (Triton unloads models and frees its shared memory), then SIGKILL."""
        if self.process is None:
            return None
        timeout_s = timeout_s if timeout_s is not None else self.settings.exit_timeout_s + 15
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("tritonserver ignored SIGTERM for %.0fs; killing it", timeout_s)
                self.kill()
        code = self.process.returncode
        self._cleanup()
        return code

    def kill(self) -> None:
        """SIGKILL the server and its stubs (fault tests); stale shm regions are removed."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self._cleanup()  # start() may follow, on the same ports

    def _remove_shm_regions(self) -> None:
        # A killed server leaves its Python-backend regions behind.
        for path in leftover_shm_regions(self.shm_prefix):
            with contextlib.suppress(OSError):
                os.unlink(path)

    def _cleanup(self) -> None:
        self.process = None
        self._remove_shm_regions()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> EmbeddedTriton:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
