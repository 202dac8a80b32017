"""Fixtures that start real processes: one embedded tritonserver per test session
(loopback, free ports) and real grpc.aio servers in the test's event loop."""
from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import tempfile
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.embedded_triton.settings import TritonSettings
from tests.triton_server import running_triton

REPO_ROOT = Path(__file__).resolve().parents[1]

# Hermetic: the models a developer added with `prelabel models add` (their user model
# repository) must not be served by the tests' Triton; tests that add models name their
# own repository.
os.environ["PRELABEL_USER_MODELS_DIR"] = tempfile.mkdtemp(prefix="prelabel-test-user-models-")


@pytest.fixture(scope="session")
def triton(tmp_path_factory):
    """The real tritonserver from the nvidia-pytriton wheel, serving model_repository/."""
    log_path = tmp_path_factory.mktemp("triton") / "tritonserver.log"
    with running_triton(TritonSettings(grpc_port=0, http_port=0, metrics_port=0), log_path) as server:
        yield server


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


@contextlib.asynccontextmanager
async def serving(process: str, settings_class: str, **settings):
    """Run `services.<process>` in this event loop on a free loopback port (no metrics
    endpoint, a fresh registry); yields its address."""
    from services.common.metrics import Metrics

    build_app = importlib.import_module(f"services.{process}.app").build_app
    settings_type = getattr(importlib.import_module(f"services.{process}.settings"), settings_class)
    app = build_app(settings_type(grpc_port=0, metrics_port=None, **settings), Metrics(process))
    async with running(app) as address:
        yield address


@contextlib.asynccontextmanager
async def stub(address: str, module: str, name: str):
    async with grpc.aio.insecure_channel(address) as channel:
        yield getattr(importlib.import_module(f"prelabel.v1.{module}_pb2_grpc"), name)(channel)


@pytest.fixture(scope="session")
async def detection_address(triton):
    async with serving("detection", "DetectionSettings", triton_url=triton.grpc_url) as address:
        yield address


@pytest.fixture(scope="session")
async def segmentation_address(triton):
    async with serving("segmentation", "SegmentationSettings", triton_url=triton.grpc_url) as address:
        yield address


@pytest.fixture(scope="session")
async def keypoints_address(triton):
    async with serving("keypoints", "KeypointSettings", triton_url=triton.grpc_url) as address:
        yield address


@pytest.fixture(scope="session")
async def router_address(detection_address, segmentation_address, keypoints_address):
    """The real router over the real detection, segmentation and keypoint services."""
    async with serving("router", "RouterSettings", detection_addr=detection_address, segmentation_addr=segmentation_address,
                       keypoints_addr=keypoints_address) as address:
        yield address


@pytest.fixture(scope="session")
async def detector(detection_address):
    async with stub(detection_address, "detection", "DetectorStub") as s:
        yield s


@pytest.fixture(scope="session")
async def segmenter(segmentation_address):
    async with stub(segmentation_address, "segmentation", "SegmenterStub") as s:
        yield s


@pytest.fixture(scope="session")
async def keypoint_detector(keypoints_address):
    async with stub(keypoints_address, "keypoints", "KeypointDetectorStub") as s:
        yield s


@pytest.fixture(scope="session")
async def router(router_address):
    async with stub(router_address, "prelabel", "PreLabelerStub") as s:
        yield s
