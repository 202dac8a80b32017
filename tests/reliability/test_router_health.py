"""What the suite says about itself: the router publishes each service's health under
its own name ("" stays SERVING while any serves: partial results beat none); cascade
mode reports a dead service UNAVAILABLE even when there was nothing to prompt it with;
an unknown priority is refused instead of served at some level."""
from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from prelabel.v1 import common_pb2, detection_pb2, prelabel_pb2, prelabel_pb2_grpc
from services.embedded_triton.launcher import free_port
from tests.conftest import serving
from tests.integration.slow_services import slow_service
from tests.reliability import corpus
from tests.reliability.conftest import HEALTH_NOT_SERVING, HEALTH_SERVING

pytestmark = [pytest.mark.integration]


WANTED = {"detection": HEALTH_SERVING, "segmentation": HEALTH_NOT_SERVING, "keypoints": HEALTH_SERVING}


async def health_of(address: str, service: str) -> int:
    async with grpc.aio.insecure_channel(address) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=5)
        return reply.status


@pytest.mark.timeout(120)
async def test_router_health_names_each_service_when_one_service_is_down(detection_address, keypoints_address):
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    async with serving("router", "RouterSettings", detection_addr=detection_address, segmentation_addr=dead,
                       keypoints_addr=keypoints_address, health_poll_s=0.2) as router:
        deadline = time.monotonic() + 10  # the first poll may still be under way
        while True:
            statuses = {name: await health_of(router, name) for name in ("", *WANTED)}
            if statuses == {"": HEALTH_SERVING, **WANTED} or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
    assert statuses == {"": HEALTH_SERVING, **WANTED}, statuses


@pytest.mark.timeout(120)
async def test_prelabel_cascade_reports_unavailable_when_keypoints_is_dead_and_no_person_found():
    # A stand-in detector that finds nothing: "no person in the picture" on demand,
    # which a real model cannot promise for any given image.
    dead = f"127.0.0.1:{free_port()}"
    async with slow_service("detection", 0.0, detections_per_reply=0) as (det, _), \
            slow_service("segmentation", 0.0) as (seg, _), \
            serving("router", "RouterSettings", detection_addr=det, segmentation_addr=seg,
                    keypoints_addr=dead) as router, \
            grpc.aio.insecure_channel(router) as channel:
        reply = await prelabel_pb2_grpc.PreLabelerStub(channel).PreLabel(prelabel_pb2.PreLabelRequest(
            image=common_pb2.Image(data=corpus.encode(corpus.sample_photo(), "PNG")), cascade=True,
            tasks=[prelabel_pb2.TASK_DETECT, prelabel_pb2.TASK_SEGMENT, prelabel_pb2.TASK_KEYPOINTS]), timeout=10)
    codes = {prelabel_pb2.Task.Name(r.task): r.code for r in reply.task_results}
    assert codes == {"TASK_DETECT": "OK", "TASK_SEGMENT": "OK", "TASK_KEYPOINTS": "UNAVAILABLE"}, codes


@pytest.mark.timeout(120)
async def test_detect_rejects_unknown_priority_when_value_is_not_in_the_enum(detector):
    request = detection_pb2.DetectRequest(image=common_pb2.Image(data=corpus.encode(corpus.sample_photo(), "PNG")),
                                          priority=7)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await detector.Detect(request, timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("priority:")
