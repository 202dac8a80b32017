"""Long caller strings: every value a rejection echoes is bounded, so INVALID_ARGUMENT
stays INVALID_ARGUMENT (the trailers used to pass gRPC's 16 KiB metadata limit and the
caller saw RESOURCE_EXHAUSTED, "overload, retry"); and the bulk CLI never retries a
rejection, including a size error that carries no retry hint."""
from __future__ import annotations

import grpc
import pytest

from prelabel.bulk import REJECTED, RETRY, classify_error
from prelabel.v1 import common_pb2, detection_pb2, detection_pb2_grpc, prelabel_pb2
from tests.grpc_helpers import field_violation
from tests.reliability import corpus
from tests.reliability.conftest import detection_app

pytestmark = [pytest.mark.integration]

#: gRPC's soft metadata limit: trailers under it are never refused.
METADATA_SOFT_LIMIT_BYTES = 8 * 1024
LONG_VALUES = {"ascii 6 KB": "m" * 6000, "non-ASCII 2000 chars": "é€" * 1000, "4 KB": "x" * 4096}


def trailer_bytes(err: grpc.aio.AioRpcError) -> int:
    return sum(len(k) + len(v) for k, v in (err.trailing_metadata() or ()))


def image() -> common_pb2.Image:
    return common_pb2.Image(data=corpus.encode(corpus.sample_photo(), "PNG"), image_id="long")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("value", LONG_VALUES.values(), ids=LONG_VALUES.keys())
async def test_detect_answers_bounded_invalid_argument_when_model_name_is_long(detector, value):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await detector.Detect(detection_pb2.DetectRequest(image=image(), model=value), timeout=30)
    err = caught.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (err.code(), err.details()[:200])
    assert field_violation(err).field == "model"
    assert trailer_bytes(err) < METADATA_SOFT_LIMIT_BYTES / 2, trailer_bytes(err)
    assert len(err.details().encode()) <= 512


@pytest.mark.timeout(120)
@pytest.mark.parametrize("value", LONG_VALUES.values(), ids=LONG_VALUES.keys())
async def test_prelabel_answers_bounded_invalid_argument_when_policy_category_is_long_and_band_bad(
        router, value):
    policy = common_pb2.ReviewPolicy(by_category={value: common_pb2.ReviewBand(accept_at=2.0)})
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await router.PreLabel(prelabel_pb2.PreLabelRequest(image=image(), review_policy=policy), timeout=30)
    err = caught.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (err.code(), err.details()[:200])
    assert field_violation(err).field.startswith("review_policy")
    assert trailer_bytes(err) < METADATA_SOFT_LIMIT_BYTES / 2, trailer_bytes(err)


@pytest.mark.timeout(120)
async def test_bulk_rejects_without_retry_when_resource_exhausted_is_a_size_limit(triton):
    request = detection_pb2.DetectRequest(image=common_pb2.Image(data=b"\0" * 70_000))
    async with detection_app(triton.grpc_url, grpc_max_receive_bytes=64 * 1024) as (_, address), \
            grpc.aio.insecure_channel(address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await detection_pb2_grpc.DetectorStub(channel).Detect(request, timeout=30)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert classify_error(caught.value).kind == REJECTED


@pytest.mark.timeout(120)
async def test_bulk_retries_when_resource_exhausted_is_overload_with_retry_hint(triton):
    request = detection_pb2.DetectRequest(image=image())
    async with detection_app(triton.grpc_url, max_in_flight=0) as (_, address), \
            grpc.aio.insecure_channel(address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await detection_pb2_grpc.DetectorStub(channel).Detect(request, timeout=30)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    outcome = classify_error(caught.value)
    assert outcome.kind == RETRY and outcome.overload


@pytest.mark.timeout(120)
async def test_prelabel_stream_bounds_item_message_when_policy_category_is_long_and_band_bad(router):
    policy = common_pb2.ReviewPolicy(by_category={"k" * 6000: common_pb2.ReviewBand(accept_at=2.0)})
    request = prelabel_pb2.PreLabelRequest(image=image(), review_policy=policy)
    replies = [r async for r in router.PreLabelStream(iter([request]), timeout=30)]
    (reply,) = replies
    assert {t.code for t in reply.task_results} == {"INVALID_ARGUMENT"}
    assert all(len(t.message.encode()) <= 512 for t in reply.task_results)
