"""Two `authorization` headers on one call, against the router as a real process: which
one a proxy and the server read may differ, so neither order is let in."""
from __future__ import annotations

import json

import grpc
import pytest

from prelabel.v1 import common_pb2, prelabel_pb2, prelabel_pb2_grpc
from tests.reliability.conftest import service_process
from tests.reliability.recording_services import recording_services

pytestmark = [pytest.mark.integration]

GOOD, BAD = ("authorization", "Bearer good"), ("authorization", "Bearer bad")


@pytest.mark.timeout(60)
async def test_router_refuses_call_when_it_carries_two_authorization_headers(tmp_path):
    request = prelabel_pb2.PreLabelRequest(image=common_pb2.Image(data=b"image", image_id="a"),
                                           tasks=[prelabel_pb2.TASK_DETECT])
    async with recording_services() as (services, received), \
            service_process("router", tmp_path, PRELABEL_DETECTION_ADDR=services,
                            PRELABEL_SEGMENTATION_ADDR=services, PRELABEL_KEYPOINTS_ADDR=services,
                            PRELABEL_AUTH_TOKENS=json.dumps({"good": ["*"]})) as router, \
            grpc.aio.insecure_channel(router.address) as channel:
        stub = prelabel_pb2_grpc.PreLabelerStub(channel)
        await stub.PreLabel(request, metadata=[GOOD], timeout=10)  # the token itself is valid
        codes = []
        for metadata in ([GOOD, BAD], [BAD, GOOD], [GOOD, GOOD]):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.PreLabel(request, metadata=metadata, timeout=10)
            codes.append(caught.value.code())
    assert codes == [grpc.StatusCode.UNAUTHENTICATED] * 3
    assert len(received.sizes) == 1
