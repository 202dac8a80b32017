"""Fixtures that start real processes: one embedded tritonserver per test session
(loopback, free ports) and real grpc.aio servers in the test's event loop."""
from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.embedded_triton.launcher import EmbeddedTriton
from services.embedded_triton.settings import TritonSettings

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def triton(tmp_path_factory):
    """The real tritonserver from the nvidia-pytriton wheel, serving model_repository/."""
    log_path = tmp_path_factory.mktemp("triton") / "tritonserver.log"
    server = EmbeddedTriton(TritonSettings(grpc_port=0, http_port=0, metrics_port=0), log_path=log_path)
    try:
        server.start()
    except Exception:
        print(log_path.read_text()[-5000:] if log_path.exists() else "no log")
        raise
    yield server
    server.stop()


async def wait_serving(address: str, service: str = "", timeout_s: float = 120.0) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            with contextlib.suppress(grpc.aio.AioRpcError):
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{address} not SERVING after {timeout_s}s")
            await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def running(app, wait_ready: bool = True):
    """Run a GrpcApp in this event loop until the block ends, then stop it gracefully."""
    await app.start()
    task = asyncio.create_task(app.run(install_signal_handlers=False))
    address = f"127.0.0.1:{app.port}"
    try:
        if wait_ready:
            await wait_serving(address)
        yield address
    finally:
        app.request_stop()
        await asyncio.wait_for(task, 60)


@pytest.fixture(scope="session")
async def detection_address(triton):
    from services.common.metrics import Metrics
    from services.detection.app import build_app
    from services.detection.settings import DetectionSettings

    settings = DetectionSettings(grpc_port=0, metrics_port=None, triton_url=triton.grpc_url)
    async with running(build_app(settings, Metrics("detection"))) as address:
        yield address


@pytest.fixture(scope="session")
async def detector(detection_address):
    from prelabel.v1 import detection_pb2_grpc

    async with grpc.aio.insecure_channel(detection_address) as channel:
        yield detection_pb2_grpc.DetectorStub(channel)


@pytest.fixture(scope="session")
async def segmentation_address(triton):
    from services.common.metrics import Metrics
    from services.segmentation.app import build_app
    from services.segmentation.settings import SegmentationSettings

    settings = SegmentationSettings(grpc_port=0, metrics_port=None, triton_url=triton.grpc_url)
    async with running(build_app(settings, Metrics("segmentation"))) as address:
        yield address


@pytest.fixture(scope="session")
async def segmenter(segmentation_address):
    from prelabel.v1 import segmentation_pb2_grpc

    async with grpc.aio.insecure_channel(segmentation_address) as channel:
        yield segmentation_pb2_grpc.SegmenterStub(channel)


@pytest.fixture(scope="session")
async def keypoints_address(triton):
    from services.common.metrics import Metrics
    from services.keypoints.app import build_app
    from services.keypoints.settings import KeypointSettings

    settings = KeypointSettings(grpc_port=0, metrics_port=None, triton_url=triton.grpc_url)
    async with running(build_app(settings, Metrics("keypoints"))) as address:
        yield address


@pytest.fixture(scope="session")
async def keypoint_detector(keypoints_address):
    from prelabel.v1 import keypoints_pb2_grpc

    async with grpc.aio.insecure_channel(keypoints_address) as channel:
        yield keypoints_pb2_grpc.KeypointDetectorStub(channel)


@pytest.fixture(scope="session")
async def router_address(detection_address, segmentation_address, keypoints_address):
    """The real router over the real detection, segmentation and keypoint services."""
    from services.common.metrics import Metrics
    from services.router.app import build_app
    from services.router.settings import RouterSettings

    settings = RouterSettings(grpc_port=0, metrics_port=None, detection_addr=detection_address,
                              segmentation_addr=segmentation_address, keypoints_addr=keypoints_address)
    async with running(build_app(settings, Metrics("router"))) as address:
        yield address


@pytest.fixture(scope="session")
async def router(router_address):
    from prelabel.v1 import prelabel_pb2_grpc

    async with grpc.aio.insecure_channel(router_address) as channel:
        yield prelabel_pb2_grpc.PreLabelerStub(channel)
