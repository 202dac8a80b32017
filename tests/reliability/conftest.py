"""Helpers for the reliability tests: extra detection apps with their own limits, a
detection *process* (`python -m services.detection`), Triton statistics, latency
percentiles, process inspection (RSS, children) and the figures report."""
from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
import tritonclient.grpc as triton_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.embedded_triton.launcher import EmbeddedTriton, free_port
from services.embedded_triton.settings import TritonSettings
from tests.conftest import REPO_ROOT, running, wait_serving
from tests.reliability import report

HEALTH_SERVING = health_pb2.HealthCheckResponse.SERVING
HEALTH_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


# ------------------------------------------------------------------------- figures
def percentile(values, q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]); NaN for no values."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@pytest.fixture
def record():
    """`record(section, **figures)`: add measured figures to reliability-report.json."""
    return report.record


# ---------------------------------------------------------------- Triton helpers
def triton_inference_count(url: str, model: str, outcomes=("success", "fail")) -> int:
    """Requests Triton has seen for `model` with the given outcomes (successes and
    failures by default), from its own statistics endpoint: the ground truth for
    "Triton was never called"."""
    client = triton_grpc.InferenceServerClient(url)
    try:
        stats = client.get_inference_statistics(model_name=model, as_json=True)
    finally:
        client.close()
    total = 0
    for model_stats in stats.get("model_stats", []):
        infer = model_stats.get("inference_stats", {})
        total += sum(int(infer.get(outcome, {}).get("count", 0)) for outcome in outcomes)
    return total


def process_group_pids(pgid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:  # fields after ")": state ppid pgrp ...
                pids.append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    return pids


def sigkill_triton(server: EmbeddedTriton) -> None:
    """SIGKILL tritonserver and its Python stubs, then remove the shared-memory regions
    *this* server had mapped.

    Not `EmbeddedTriton.kill()`: that one unlinks every
    /dev/shm/triton_python_backend_shm_region_* on the machine, including the live
    regions of other engineers' Tritons running tests at the same time (reported to the
    lead with a fix). The signal is the same: SIGKILL to the whole process group."""
    pgid = server.process.pid
    own_regions = set()
    for pid in process_group_pids(pgid):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/maps") as f:
            own_regions.update(line.split()[-1] for line in f
                               if "/dev/shm/triton_python_backend_shm_region_" in line)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    server.process.wait()
    for path in own_regions:
        with contextlib.suppress(OSError):
            os.unlink(path)


# ---------------------------------------------------------------- process helpers
@pytest.fixture(scope="module")
def face_triton(tmp_path_factory):
    """A Triton of the module's own serving face_detector alone, for tests that kill it
    (the session server must survive them)."""
    log_path = tmp_path_factory.mktemp("face-triton") / "tritonserver.log"
    server = EmbeddedTriton(TritonSettings(grpc_port=0, http_port=0, metrics_port=0, models=["face_detector"]),
                            log_path=log_path)
    server.start()
    yield server
    if server.process is not None:
        server.stop()


def rss_bytes() -> int:
    """Resident set size of this process, from /proc/self/statm (no psutil)."""
    with open("/proc/self/statm") as f:
        resident_pages = int(f.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def descendants(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of every live descendant of `pid`."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        with contextlib.suppress(OSError), open(f"/proc/{child}/cmdline", "rb") as f:
            out.append((child, f.read().replace(b"\0", b" ").decode(errors="replace").strip()))
        todo.extend(children.get(child, []))
    return out


# ------------------------------------------------------------ detection apps
@contextlib.asynccontextmanager
async def detection_app(triton_url: str, **overrides):
    """A detection GrpcApp in this event loop with its own settings (limits, models)."""
    from services.common.metrics import Metrics
    from services.detection.app import build_app
    from services.detection.settings import DetectionSettings

    settings = DetectionSettings(grpc_port=0, metrics_port=None, triton_url=triton_url, **overrides)
    app = build_app(settings, Metrics("detection"))
    async with running(app) as address:
        yield app, address


@dataclass
class ServiceProcess:
    """`python -m services.<kind>` as a child process (its own GIL and event loop)."""

    process: subprocess.Popen
    address: str
    metrics_url: str
    log_path: Path
    env: dict = field(default_factory=dict)

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def metric(self, name: str, **labels) -> float:
        """Sum of the samples of `name` whose labels include `labels` (0 when absent)."""
        with urllib.request.urlopen(self.metrics_url, timeout=5) as r:
            text = r.read().decode()
        total = 0.0
        for line in text.splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            head, value = line.rsplit(" ", 1)
            if all(f'{k}="{v}"' in head for k, v in labels.items()):
                total += float(value)
        return total

    def rss_bytes(self) -> int:
        """Resident set size of the process, from /proc/<pid>/statm."""
        with open(f"/proc/{self.process.pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def cpu_s(self) -> float:
        """User + system CPU seconds the process has used (all its threads)."""
        with open(f"/proc/{self.process.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


@contextlib.asynccontextmanager
async def service_process(kind: str, tmp_path: Path, wait_ready: bool = True, **env_overrides):
    """Start `python -m services.<kind>` configured through PRELABEL_* env vars; wait
    until SERVING; on exit SIGCONT (a test may have stopped it), then SIGTERM it
    (SIGKILL if it ignores that)."""
    port, metrics_port = free_port(), free_port()
    env = dict(os.environ)
    env.update({
        "PRELABEL_GRPC_PORT": str(port),
        "PRELABEL_METRICS_PORT": str(metrics_port),
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p),
    })
    env.update({k: str(v) for k, v in env_overrides.items()})
    log_path = tmp_path / f"{kind}-{port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", f"services.{kind}"], cwd=REPO_ROOT, env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
    proc = ServiceProcess(process, f"127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}/metrics",
                          log_path, env)
    try:
        if wait_ready:
            await wait_serving(proc.address, timeout_s=120)
        yield proc
    except BaseException:
        print(proc.log_tail())
        raise
    finally:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGCONT)
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(process.wait, 30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def detection_process(triton_url: str, tmp_path: Path, **env_overrides):
    """The detection service as a real process (see service_process)."""
    return service_process("detection", tmp_path, PRELABEL_TRITON_URL=triton_url, **env_overrides)


async def health_status(address: str, timeout_s: float = 1.0) -> int | None:
    """The overall health status of `address`, or None when it does not answer."""
    async with grpc.aio.insecure_channel(address) as channel:
        try:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout_s)
            return reply.status
        except grpc.aio.AioRpcError:
            return None


async def wait_health(address: str, wanted: int, timeout_s: float, poll_s: float = 0.05) -> float:
    """Poll until health reports `wanted`; returns the seconds it took."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout_s:
        if await health_status(address) == wanted:
            return time.perf_counter() - start
        await asyncio.sleep(poll_s)
    raise TimeoutError(f"{address} not {health_pb2.HealthCheckResponse.ServingStatus.Name(wanted)} "
                       f"after {timeout_s}s")

