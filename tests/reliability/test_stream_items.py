"""One malformed message on PreLabelStream is answered as one failed item (its index in
the message, no image id to echo); the stream and the results in flight go on."""
from __future__ import annotations

import grpc
import pytest

from prelabel.v1 import common_pb2, prelabel_pb2
from tests.conftest import serving
from tests.integration.slow_services import slow_service
from tests.reliability import corpus

pytestmark = [pytest.mark.integration]

METHOD = "/prelabel.v1.PreLabeler/PreLabelStream"
GARBAGE = b"\xff\xff\xff\xff not a protobuf message"


def item(image_id: str) -> bytes:
    image = common_pb2.Image(data=corpus.encode(corpus.sample_photo(), "PNG"), image_id=image_id)
    return prelabel_pb2.PreLabelRequest(image=image, tasks=[prelabel_pb2.TASK_DETECT]).SerializeToString()


@pytest.mark.timeout(120)
async def test_prelabel_stream_answers_malformed_message_as_one_item_when_others_are_valid():
    # Stand-in services: the router's stream handling is under test, not the models.
    async with slow_service("detection", 0.05) as (det, _), slow_service("segmentation", 0.0) as (seg, _), \
            slow_service("keypoints", 0.0) as (kp, _), \
            serving("router", "RouterSettings", detection_addr=det, segmentation_addr=seg,
                    keypoints_addr=kp) as router, \
            grpc.aio.insecure_channel(router) as channel:
        # Raw bytes on the wire: a client library would refuse to send the garbage.
        call = channel.stream_stream(METHOD, request_serializer=lambda b: b,
                                     response_deserializer=prelabel_pb2.PreLabelResponse.FromString)(
            iter([item("a"), GARBAGE, item("c")]), timeout=30)
        replies = [r async for r in call]
        assert await call.code() == grpc.StatusCode.OK
    by_id = {r.image_id: r for r in replies}
    assert set(by_id) == {"a", "", "c"}, [r.image_id for r in replies]
    assert [t.code for t in by_id["a"].task_results] == ["OK"]
    assert [t.code for t in by_id["c"].task_results] == ["OK"]
    malformed = by_id[""].task_results
    assert {t.code for t in malformed} == {"INVALID_ARGUMENT"}
    assert "message 1 " in malformed[0].message
