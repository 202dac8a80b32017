"""The real router serving a review-policy file: loads it, forwards it to the services,
reports its id in every response and in metrics, reloads it without a restart, keeps
the old one when the new file is bad, and refuses to start with a bad one.

The detector is a stand-in that records the policy it receives and decides its one
label with it (what the real services do, tests/unit/test_policy_file.py), so nothing
here depends on what a model finds in a picture."""
from __future__ import annotations

import asyncio
import contextlib
import json

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from prelabel.core.policy_file import PolicyFileError, load_policy_file
from prelabel.core.review import AUTO_ACCEPT, NEEDS_REVIEW, policy_from_proto
from prelabel.v1 import common_pb2, detection_pb2, detection_pb2_grpc, prelabel_pb2, prelabel_pb2_grpc
from services.common.metrics import Metrics
from services.router.app import build_app
from services.router.settings import RouterSettings
from tests.conftest import running

pytestmark = pytest.mark.timeout(60)

SCORE = 0.8
IMAGE = common_pb2.Image(data=b"not decoded by the stand-in", image_id="a.jpg")


class PolicyRecordingDetector(detection_pb2_grpc.DetectorServicer):
    def __init__(self):
        self.policies: list[common_pb2.ReviewPolicy] = []

    async def Detect(self, request, context):
        self.policies.append(request.review_policy)
        policy = policy_from_proto(request.review_policy)
        d = common_pb2.Detection(box=common_pb2.Box(x_min=1, y_min=1, x_max=9, y_max=9), score=SCORE,
                                 category=common_pb2.Category(id=1, name="person"),
                                 review=policy.band("person").decide(SCORE))
        return detection_pb2.DetectResponse(image_id=request.image.image_id, detections=[d],
                                            image_size=common_pb2.ImageSize(width=10, height=10))


@contextlib.asynccontextmanager
async def detector():
    servicer, server = PolicyRecordingDetector(), grpc.aio.server()
    detection_pb2_grpc.add_DetectorServicer_to_server(servicer, server)
    health = HealthServicer()
    await health.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}", servicer
    finally:
        await server.stop(0)


def policy_doc(person_accept_at: float) -> dict:
    return {"review_policy": {"default_band": {"accept_at": 0.85, "reject_below": 0.3},
                              "by_category": {"person": {"accept_at": person_accept_at, "reject_below": 0.1}}},
            "provenance": {"created_by": "test"}}


def write(path, doc) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    tmp.replace(path)  # as calibrate writes: a reader never sees half a file


@contextlib.asynccontextmanager
async def router_with_policy(policy_path, detection_addr):
    metrics = Metrics("router")
    settings = RouterSettings(grpc_port=0, metrics_port=None, detection_addr=detection_addr,
                              segmentation_addr="127.0.0.1:1", keypoints_addr="127.0.0.1:1",
                              review_policy_file=policy_path, review_policy_reload_s=0.05)
    async with running(build_app(settings, metrics)) as address, grpc.aio.insecure_channel(address) as channel:
        yield prelabel_pb2_grpc.PreLabelerStub(channel), metrics


async def detect(stub, **kw) -> prelabel_pb2.PreLabelResponse:
    return await stub.PreLabel(prelabel_pb2.PreLabelRequest(image=IMAGE, tasks=[prelabel_pb2.TASK_DETECT], **kw),
                               timeout=10)


def info(metrics, policy_id, source) -> float | None:
    return metrics.registry.get_sample_value(
        "prelabel_review_policy_info", {"service": "router", "policy_id": policy_id, "source": str(source)})


async def test_router_serves_forwards_and_reports_policy_when_file_named_in_settings(tmp_path):
    path = tmp_path / "policy.json"
    write(path, policy_doc(person_accept_at=0.75))
    expected = load_policy_file(path).id
    async with detector() as (addr, det), router_with_policy(path, addr) as (stub, metrics):
        reply = await detect(stub)
        assert reply.uncertainty.review_policy_id == expected
        assert policy_from_proto(det.policies[-1]).id == expected  # the service decided with it
        assert reply.detections[0].review == AUTO_ACCEPT  # 0.8 >= the file's 0.75, below the default 0.85
        assert info(metrics, expected, path) == 1


async def test_router_reloads_policy_without_restart_and_keeps_old_when_new_file_is_bad(tmp_path):
    path = tmp_path / "policy.json"
    write(path, policy_doc(person_accept_at=0.75))
    first = load_policy_file(path).id
    async with detector() as (addr, _), router_with_policy(path, addr) as (stub, metrics):
        assert (await detect(stub)).uncertainty.review_policy_id == first
        write(path, policy_doc(person_accept_at=0.95))
        second = load_policy_file(path).id
        await asyncio.sleep(0.1)
        reply = await detect(stub)
        assert reply.uncertainty.review_policy_id == second
        assert reply.detections[0].review == NEEDS_REVIEW
        assert (info(metrics, first, path), info(metrics, second, path)) == (0, 1)

        write(path, {"review_policy": {"default_band": {"accept_at": 2.0}}})
        await asyncio.sleep(0.1)
        reply = await detect(stub)
        assert reply.uncertainty.review_policy_id == second  # the bad file changed nothing
        refused = metrics.registry.get_sample_value("prelabel_review_policy_reloads_total",
                                                    {"service": "router", "outcome": "refused"})
        assert refused == 1


async def test_router_uses_request_policy_when_request_sets_bands(tmp_path):
    path = tmp_path / "policy.json"
    write(path, policy_doc(person_accept_at=0.75))
    own = common_pb2.ReviewPolicy(default_band=common_pb2.ReviewBand(accept_at=0.99, reject_below=0.5))
    async with detector() as (addr, det), router_with_policy(path, addr) as (stub, _):
        reply = await detect(stub, review_policy=own)
        assert reply.uncertainty.review_policy_id == policy_from_proto(own).id != load_policy_file(path).id
        assert reply.detections[0].review == NEEDS_REVIEW
        assert policy_from_proto(det.policies[-1]).id == policy_from_proto(own).id


def test_router_refuses_to_start_with_clear_error_when_policy_file_is_bad(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text("review_policy:\n  by_category:\n    person: {accept_at: 0.2, reject_below: 0.6}\n")
    with pytest.raises(PolicyFileError, match=r"policy\.yaml: review_policy\.by_category\[person\]: "
                                              r"reject_below \(0\.6\) is above accept_at \(0\.2\)"):
        build_app(RouterSettings(grpc_port=0, metrics_port=None, review_policy_file=path), Metrics("router"))


@pytest.mark.parametrize("process, settings_class", [
    ("detection", "DetectionSettings"), ("segmentation", "SegmentationSettings"), ("keypoints", "KeypointSettings")])
def test_service_refuses_to_start_with_clear_error_when_policy_file_is_bad(tmp_path, process, settings_class):
    import importlib

    path = tmp_path / "policy.json"
    path.write_text('{"review_policy": {"default_band": {"accept_at": 1.5}}}')
    settings = getattr(importlib.import_module(f"services.{process}.settings"), settings_class)
    build = importlib.import_module(f"services.{process}.app").build_app
    with pytest.raises(PolicyFileError, match=r"policy\.json: review_policy\.default_band\.accept_at: "
                                              r"must be in \[0, 1\], got 1\.5"):
        build(settings(grpc_port=0, metrics_port=None, review_policy_file=path), Metrics(process))
