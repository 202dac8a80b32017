"""A real Prometheus scrapes a real detection service and the real tritonserver on
loopback while we drive load; then its HTTP API must answer the queries the
dashboard and alerts use with sensible values."""
from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from prelabel.v1 import common_pb2, detection_pb2, detection_pb2_grpc
from services.common.metrics import Metrics
from services.detection.app import build_app
from services.detection.settings import DetectionSettings
from services.embedded_triton.launcher import free_port
from tests.conftest import running
from tests.photos import photo_bytes

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

SCRAPE_INTERVAL_S = 1


def query(base: str, expr: str) -> list[dict]:
    url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    with urllib.request.urlopen(url, timeout=5) as r:
        body = json.load(r)
    assert body["status"] == "success", body
    return body["data"]["result"]


def scalar(base: str, expr: str) -> float | None:
    result = query(base, expr)
    return float(result[0]["value"][1]) if result else None


@pytest.fixture
def prometheus(tmp_path):
    binary = shutil.which("prometheus")
    assert binary, "prometheus not installed: `make system-deps` (apt-get install prometheus)"

    def start(targets: dict[str, str]):
        config = {"global": {"scrape_interval": f"{SCRAPE_INTERVAL_S}s", "evaluation_interval": "1s"},
                  "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [target]}]}
                                     for job, target in targets.items()]}
        (tmp_path / "prometheus.yml").write_text(json.dumps(config))
        port = free_port()
        with open(tmp_path / "prometheus.log", "wb") as log:  # the child keeps its own copy
            proc = subprocess.Popen(
                [binary, f"--config.file={tmp_path / 'prometheus.yml'}",
                 f"--web.listen-address=127.0.0.1:{port}", f"--storage.tsdb.path={tmp_path / 'data'}"],
                stdout=subprocess.DEVNULL, stderr=log)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{base}/-/ready", timeout=1) as r:
                    if r.status == 200:
                        started.append(proc)
                        return base
            except OSError:
                time.sleep(0.2)
        proc.kill()
        raise TimeoutError((tmp_path / "prometheus.log").read_text()[-2000:])

    started: list[subprocess.Popen] = []
    yield start
    for proc in started:
        proc.terminate()
        proc.wait(10)


async def wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


async def test_prometheus_answers_rate_quantile_and_batch_size_when_suite_under_load(triton, prometheus):
    import grpc

    settings = DetectionSettings(grpc_port=0, metrics_port=0, triton_url=triton.grpc_url)
    app = build_app(settings, Metrics("detection"))
    async with running(app) as address:
        base = prometheus({"prelabel": f"127.0.0.1:{app.metrics_port}",
                           "triton": f"{triton.host}:{triton.metrics_port}"})
        await wait_for(lambda: scalar(base, 'count(up{job=~"prelabel|triton"} == 1)') == 2, 20, "targets up")

        ok_total = 'sum(prelabel_rpc_requests_total{service="detection",code="OK"})'
        request = detection_pb2.DetectRequest(image=common_pb2.Image(data=photo_bytes("coffee.png")))
        bad = detection_pb2.DetectRequest(image=common_pb2.Image(data=b"not an image"))
        async with grpc.aio.insecure_channel(address) as channel:
            stub = detection_pb2_grpc.DetectorStub(channel)
            end = time.monotonic() + 8
            sent = 0
            while time.monotonic() < end:  # bounded load: 16 concurrent, ~8 s
                await asyncio.gather(*(stub.Detect(request, timeout=60) for _ in range(16)))
                sent += 16
            for _ in range(3):
                with pytest.raises(grpc.aio.AioRpcError):
                    await stub.Detect(bad, timeout=10)
        # Scraped since the last request: Prometheus holds every request counted.
        await wait_for(lambda: (scalar(base, 'sum(prelabel_rpc_requests_total{code="INVALID_ARGUMENT"})') == 3
                                and (scalar(base, ok_total) or 0) >= sent), 30, "the last requests scraped")

        rate = await wait_for(lambda: scalar(
            base, 'sum(rate(prelabel_rpc_requests_total{service="detection",code="OK"}[30s]))'), 15, "rate")
        assert 0.1 < rate < 1000, rate
        p95 = scalar(base, 'histogram_quantile(0.95, sum by (le) '
                           '(rate(prelabel_rpc_latency_seconds_bucket{method="Detect"}[30s])))')
        assert p95 is not None and 0.001 < p95 < 30, p95
        stage = scalar(base, 'histogram_quantile(0.5, sum by (le) '
                             '(rate(prelabel_stage_seconds_bucket{stage="triton"}[30s])))')
        assert stage is not None and 0 < stage <= p95 * 1.5
        assert scalar(base, ok_total) >= sent
        assert scalar(base, 'sum(prelabel_rpc_requests_total{code="INVALID_ARGUMENT"})') == 3
        # Probe RPCs stay out of the RPC metrics.
        assert not query(base, 'prelabel_rpc_requests_total{method="Check"}')
        batch = scalar(base, 'sum(increase(nv_inference_count{model="coco_detector"}[1m])) / '
                             'sum(increase(nv_inference_exec_count{model="coco_detector"}[1m]))')
        assert batch is not None and batch > 1.0, f"average batch size {batch}"
        queue = scalar(base, 'sum(rate(nv_inference_queue_duration_us{model="coco_detector"}[30s]))')
        assert queue is not None and queue > 0
