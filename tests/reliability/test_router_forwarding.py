"""What the router forwards to the services, against the router as a real process: a
request that fits the router's receive limit but whose forwarded copy would not fit the
services' is a size error (INVALID_ARGUMENT, no retry hint), not overload; unknown fields
(inside `Image` or anywhere else) are not forwarded to the services."""
from __future__ import annotations

import grpc
import pytest

from prelabel.core.status import RETRY_AFTER_KEY
from prelabel.v1 import common_pb2, prelabel_pb2, prelabel_pb2_grpc
from services.common.settings import ServiceSettings
from tests.reliability.conftest import service_process
from tests.reliability.recording_services import recording_services
from tests.reliability.report import figure

pytestmark = [pytest.mark.integration]

LARGE_SEND = [("grpc.max_send_message_length", 64 * 1024 * 1024)]


def router_process(tmp_path, services: str):
    return service_process("router", tmp_path, PRELABEL_DETECTION_ADDR=services,
                           PRELABEL_SEGMENTATION_ADDR=services, PRELABEL_KEYPOINTS_ADDR=services)


def near_limit_request(short_by: int) -> prelabel_pb2.PreLabelRequest:
    """An image at the image cap, and category names that bring the whole request to
    `short_by` bytes under the router's receive limit."""
    settings = ServiceSettings()
    request = prelabel_pb2.PreLabelRequest(
        image=common_pb2.Image(data=bytes(settings.max_image_bytes), image_id="near-limit"),
        tasks=[prelabel_pb2.TASK_DETECT])
    name = "c" * 1000
    while request.ByteSize() + len(name) + 3 < settings.receive_limit_bytes - short_by:
        request.category_names.append(name)
    # Fill the rest with one name of the exact length (2-byte tag+length up to 127 bytes).
    rest = settings.receive_limit_bytes - short_by - request.ByteSize()
    request.category_names.append("c" * (rest - 3 if rest - 3 > 127 else rest - 2))
    return request


@pytest.mark.timeout(60)
async def test_router_answers_invalid_argument_without_retry_hint_when_forwarded_request_exceeds_service_limit(
        tmp_path, record):
    request = near_limit_request(short_by=12)
    limit = ServiceSettings().receive_limit_bytes
    assert limit - 16 <= request.ByteSize() <= limit - 12, request.ByteSize()
    async with recording_services() as (services, received), router_process(tmp_path, services) as router, \
            grpc.aio.insecure_channel(router.address, options=LARGE_SEND) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await prelabel_pb2_grpc.PreLabelerStub(channel).PreLabel(request, timeout=30)
    err = caught.value
    retry_after = dict(err.trailing_metadata() or ()).get(RETRY_AFTER_KEY)
    record("payload_abuse", near_limit_forwarded_code=figure(
        err.code().name, "", "INVALID_ARGUMENT, no retry hint",
        err.code() == grpc.StatusCode.INVALID_ARGUMENT and retry_after is None))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (err.code(), err.details())
    assert retry_after is None
    assert received.sizes == [], "the router sent a request the services cannot receive"


UNKNOWN_FIELD_BYTES = 19 * 1000 * 1000


def with_unknown_field(message: bytes, field_number: int, size: int) -> bytes:
    """`message` with a length-delimited field `field_number` of `size` bytes appended
    (a field the schema does not know survives parsing as an unknown field)."""
    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
            n >>= 7
            if not n:
                return bytes(out)
    return message + varint(field_number << 3 | 2) + varint(size) + bytes(size)


@pytest.mark.timeout(60)
async def test_router_forwards_only_known_fields_when_image_carries_a_19mb_unknown_field(tmp_path, record):
    image = with_unknown_field(common_pb2.Image(data=bytes(3000), image_id="padded").SerializeToString(),
                               15, UNKNOWN_FIELD_BYTES)
    request = prelabel_pb2.PreLabelRequest(image=common_pb2.Image.FromString(image),
                                           tasks=[prelabel_pb2.TASK_DETECT, prelabel_pb2.TASK_SEGMENT])
    assert request.ByteSize() > UNKNOWN_FIELD_BYTES  # the unknown field travels
    async with recording_services() as (services, received), router_process(tmp_path, services) as router, \
            grpc.aio.insecure_channel(router.address, options=LARGE_SEND) as channel:
        reply = await prelabel_pb2_grpc.PreLabelerStub(channel).PreLabel(request, timeout=30)
    largest = max(received.sizes)
    record("payload_abuse", unknown_field_forwarded_bytes=figure(
        largest, "B", "< 64 KB", largest < 64 * 1024, note=f"{UNKNOWN_FIELD_BYTES >> 20} MB unknown field in Image"))
    assert [r.code for r in reply.task_results] == ["OK", "OK"]
    assert len(received.sizes) == 2
    assert largest < 64 * 1024, f"forwarded {largest} bytes to a service"
