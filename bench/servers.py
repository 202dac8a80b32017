"""The processes a bench run talks to, each on loopback with free ports:
the real tritonserver (embedded launcher, temporary repository), the detection
service as its own process (as deployed: its own interpreter and GIL, not the load
generator's), and the bare echo server."""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.repo import REPO_ROOT, build_repository

if TYPE_CHECKING:  # imported when a stack starts, not when bench is imported
    from services.embedded_triton.launcher import EmbeddedTriton

log = logging.getLogger("bench")


def _bench_triton_class():
    from services.embedded_triton.launcher import EmbeddedTriton

    class BenchTriton(EmbeddedTriton):
        """The embedded launcher, plus BENCH_STUB_PYTHON: an interpreter put first on
        the PATH of tritonserver, so the Python-backend stubs (which find their packages
        through the first `python3` on PATH) use it. bench/gpu.sh sets it to an overlay
        with numpy 1.26 when the machine has numpy 2, which the stub of nvidia-pytriton
        0.7.0 does not support (its output tensors come back empty)."""

        def environment(self) -> dict[str, str]:
            env = super().environment()
            stub_python = os.environ.get("BENCH_STUB_PYTHON")
            if stub_python:
                env["PATH"] = os.pathsep.join((str(Path(stub_python).parent), env.get("PATH", "")))
            return env

    return BenchTriton


def _BenchTriton(*args, **kwargs) -> EmbeddedTriton:
    return _bench_triton_class()(*args, **kwargs)


def process_cpu_s(pids: list[int]) -> float:
    """utime + stime of these processes, seconds (Linux /proc; 0 elsewhere)."""
    total = 0
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
        except (OSError, IndexError, ValueError):
            pass
    return total / tick


def group_pids(pgid: int) -> list[int]:
    """Processes of a process group (tritonserver and its Python-backend stubs)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[2]) == pgid:
                    pids.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                pass
    return pids


def wait_serving(address: str, process: subprocess.Popen | None, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"{what} exited with code {process.returncode} while starting")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} at {address} not SERVING after {timeout_s:.0f}s")
            time.sleep(0.2)


class Stack:
    """Start with `with Stack(...) as stack:`; everything is stopped on exit."""

    def __init__(self, *, triton_models: list[str], service_models: list[str], profile: str = "cpu",
                 echo: bool = True, startup_timeout_s: float = 300.0, keep_logs: Path | None = None,
                 add_models: Callable[[Path], list[str]] | None = None):
        self.triton_models = triton_models
        self.add_models = add_models  # writes more model folders into the repository, returns their names
        self.service_models = service_models
        self.profile = profile
        self.echo = echo
        self.startup_timeout_s = startup_timeout_s
        self.keep_logs = keep_logs
        self.workdir = Path(tempfile.mkdtemp(prefix="prelabel-bench-"))
        self.triton: EmbeddedTriton | None = None
        self.detection: subprocess.Popen | None = None
        self.echo_proc: subprocess.Popen | None = None
        self.triton_url = ""  # Triton's gRPC address, once started
        self.detection_address = ""
        self.detection_metrics_url = ""
        self.echo_address = ""
        self.startup_s: dict[str, float] = {}
        self._logs: list = []  # open log files of the child processes

    # -- lifecycle ---------------------------------------------------------------
    def __enter__(self) -> Stack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
        return env

    def start(self) -> None:
        from services.embedded_triton.launcher import free_port
        from services.embedded_triton.settings import TritonSettings

        repo = build_repository(self.workdir / "model_repository", self.triton_models)
        models = [*self.triton_models, *(self.add_models(repo) if self.add_models else [])]
        started = time.monotonic()
        settings = TritonSettings(
            model_repository=repo, models=models, profile=self.profile,
            user_model_repository=self.workdir / "no-user-models",  # not the developer's own models
            grpc_port=0, http_port=0, metrics_port=0, startup_timeout_s=self.startup_timeout_s,
            allow_random_weights=True,
        )
        self.triton = triton = _BenchTriton(settings, log_path=self.workdir / "tritonserver.log")
        try:
            triton.start()
        except Exception:
            print(self.log_tail("tritonserver.log"), file=sys.stderr)
            raise
        self.triton_url = triton.grpc_url
        self.startup_s["triton"] = time.monotonic() - started

        if self.echo:
            port = free_port()
            self.echo_address = f"127.0.0.1:{port}"
            self.echo_proc = subprocess.Popen(
                [sys.executable, "-m", "bench.echo", "--port", str(port)], cwd=REPO_ROOT,
                env=self._env(), stdout=subprocess.DEVNULL, stderr=self._log("echo.log"),
            )

        started = time.monotonic()
        port, metrics_port = free_port(), free_port()
        env = self._env()
        env.update({
            "PRELABEL_GRPC_HOST": "127.0.0.1",
            "PRELABEL_GRPC_PORT": str(port),
            "PRELABEL_METRICS_HOST": "127.0.0.1",
            "PRELABEL_METRICS_PORT": str(metrics_port),
            "PRELABEL_TRITON_URL": self.triton_url,
            "PRELABEL_MODELS": json.dumps(self.service_models),
            "PRELABEL_DEFAULT_MODEL": self.service_models[0],
            "PRELABEL_PROFILE": self.profile,
            "PRELABEL_REQUIRE_PRETRAINED": "0",
        })
        self.detection = subprocess.Popen(
            [sys.executable, "-m", "services.detection"], cwd=REPO_ROOT, env=env,
            stdout=subprocess.DEVNULL, stderr=self._log("detection.log"),
            start_new_session=True,
        )
        self.detection_address = f"127.0.0.1:{port}"
        self.detection_metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        try:
            wait_serving(self.detection_address, self.detection, self.startup_timeout_s, "detection service")
        except Exception:
            print(self.log_tail("detection.log"), file=sys.stderr)
            raise
        self.startup_s["detection"] = time.monotonic() - started
        if self.echo_proc is not None:
            self._wait_echo(self.echo_proc)

    def _wait_echo(self, proc: subprocess.Popen, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        with grpc.insecure_channel(self.echo_address) as channel:
            call = channel.unary_unary("/bench.Echo/Echo")
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"echo server exited: {self.log_tail('echo.log')}")
                try:
                    call(b"x", timeout=1)
                    return
                except grpc.RpcError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)

    def cpu_probes(self) -> dict:
        """{name: () -> cumulative CPU seconds} for the service and Triton (with its
        model stubs: the whole process group)."""
        probes = {}
        if self.detection is not None:
            probes["service"] = lambda pid=self.detection.pid: process_cpu_s([pid])
        if self.triton is not None and self.triton.process is not None:
            probes["triton"] = lambda pgid=self.triton.process.pid: process_cpu_s(group_pids(pgid))
        return probes

    def _log(self, name: str):
        handle = (self.workdir / name).open("wb")
        self._logs.append(handle)
        return handle

    def log_tail(self, name: str, chars: int = 4000) -> str:
        path = self.workdir / name
        return path.read_text(errors="replace")[-chars:] if path.exists() else f"(no {name})"

    def stop(self) -> None:
        for proc in (self.detection, self.echo_proc):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in (self.detection, self.echo_proc):
            if proc is not None:
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.detection = self.echo_proc = None
        for handle in self._logs:
            handle.close()
        self._logs.clear()
        if self.triton is not None:
            self.triton.stop()
            self.triton = None
        if self.keep_logs is not None:
            self.keep_logs.mkdir(parents=True, exist_ok=True)
            for name in ("tritonserver.log", "detection.log", "echo.log"):
                if (self.workdir / name).exists():
                    shutil.copy(self.workdir / name, self.keep_logs / name)
        shutil.rmtree(self.workdir, ignore_errors=True)
