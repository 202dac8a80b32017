"""PreLabelStream against the router as a real process: admission counts images in
flight, not calls (an idle stream holds no slot, a stream with four images holds four);
an idle stream ends after the idle timeout; SIGTERM stops reading new images, finishes
those in flight and ends the stream UNAVAILABLE (the client retries elsewhere)."""
from __future__ import annotations

import asyncio
import signal
import time

import grpc
import pytest

from prelabel.core.status import RETRY_AFTER_KEY
from prelabel.v1 import common_pb2, prelabel_pb2, prelabel_pb2_grpc
from tests.reliability.conftest import service_process
from tests.reliability.recording_services import recording_services
from tests.reliability.report import figure
from tests.waiting import until

pytestmark = [pytest.mark.integration]

MAX_IN_FLIGHT = 4
IDLE_TIMEOUT_S = 2.0


def item(i: int) -> prelabel_pb2.PreLabelRequest:
    # The stand-in services never decode it: any bytes are an image to the router.
    return prelabel_pb2.PreLabelRequest(image=common_pb2.Image(data=b"image", image_id=f"i{i}"),
                                        tasks=[prelabel_pb2.TASK_DETECT])


def router_process(tmp_path, services: str, **env):
    env = {"PRELABEL_MAX_IN_FLIGHT": MAX_IN_FLIGHT, "PRELABEL_STREAM_IDLE_TIMEOUT_S": IDLE_TIMEOUT_S, **env}
    return service_process("router", tmp_path, PRELABEL_DETECTION_ADDR=services,
                           PRELABEL_SEGMENTATION_ADDR=services, PRELABEL_KEYPOINTS_ADDR=services, **env)


async def unary_code(stub) -> tuple[grpc.StatusCode, str | None]:
    try:
        await stub.PreLabel(item(-1), timeout=10)
        return grpc.StatusCode.OK, None
    except grpc.aio.AioRpcError as err:
        return err.code(), dict(err.trailing_metadata() or ()).get(RETRY_AFTER_KEY)


async def stream_code(call) -> grpc.StatusCode:
    """How an idle stream ends (it must answer nothing)."""
    try:
        async for _ in call:
            raise AssertionError("an idle stream answered something")
    except grpc.aio.AioRpcError as err:
        return err.code()
    return grpc.StatusCode.OK


@pytest.mark.timeout(60)
async def test_router_admits_prelabel_and_ends_idle_streams_when_idle_streams_outnumber_its_slots(
        tmp_path, record):
    async with recording_services() as (services, _), router_process(tmp_path, services) as router, \
            grpc.aio.insecure_channel(router.address) as channel:
        stub = prelabel_pb2_grpc.PreLabelerStub(channel)
        idle = [stub.PreLabelStream() for _ in range(2 * MAX_IN_FLIGHT)]  # no deadline, nothing sent
        opened = time.perf_counter()
        await until(lambda: router.metric("prelabel_rpc_in_flight", method="PreLabelStream") == len(idle),
                    timeout_s=10)
        code, _ = await unary_code(stub)
        ends = await asyncio.wait_for(asyncio.gather(*(stream_code(call) for call in idle)),
                                      IDLE_TIMEOUT_S + 10)
        lived_s = time.perf_counter() - opened
    record("router_streams", idle_streams=figure(len(idle), "streams", note=f"max_in_flight {MAX_IN_FLIGHT}"),
           prelabel_beside_idle_streams=figure(code.name, "", "OK", code == grpc.StatusCode.OK),
           idle_stream_lifetime_s=figure(lived_s, "s", f"idle timeout {IDLE_TIMEOUT_S:g}"))
    assert code == grpc.StatusCode.OK, "idle streams held admission slots"
    assert set(ends) == {grpc.StatusCode.UNAVAILABLE}, ends
    assert lived_s < IDLE_TIMEOUT_S + 5


YIELD_IDLE_S = 1.0
RECEIVE_SLOTS = 3  # RouterSettings: max_receiving_bytes // (receive limit x 3)


@pytest.mark.timeout(60)
async def test_idle_streams_holding_receive_room_give_it_up_when_a_call_waits_for_it(tmp_path, record):
    """Each stream's next image is read under the receive budget (three reads at once by
    default), so a stream waiting for an image holds room. Three idle streams (no deadline,
    long idle timeout) keep it while nobody waits; once a PreLabel call waits, a holder
    with nothing in flight ends UNAVAILABLE after `stream_yield_idle_s` and the call is
    answered, instead of being refused after receive_wait_s (5 s)."""
    async with recording_services() as (services, _), \
            router_process(tmp_path, services, PRELABEL_MAX_IN_FLIGHT=64, PRELABEL_STREAM_IDLE_TIMEOUT_S=300,
                           PRELABEL_STREAM_YIELD_IDLE_S=YIELD_IDLE_S) as router, \
            grpc.aio.insecure_channel(router.address) as channel:
        stub = prelabel_pb2_grpc.PreLabelerStub(channel)
        idle = [stub.PreLabelStream() for _ in range(RECEIVE_SLOTS)]
        ends = [asyncio.ensure_future(stream_code(call)) for call in idle]
        await until(lambda: router.metric("prelabel_rpc_in_flight", method="PreLabelStream") == len(idle),
                    timeout_s=10)
        await asyncio.sleep(YIELD_IDLE_S + 0.5)
        kept = not any(end.done() for end in ends)  # nobody waited: the idle holders keep their room
        asked = time.perf_counter()
        code, _ = await unary_code(stub)
        waited_s = time.perf_counter() - asked
        await asyncio.sleep(0.5)
        ended = [end.result() for end in ends if end.done()]
        for call in idle:
            call.cancel()
    record("router_streams", prelabel_beside_idle_streams_holding_receive_room=figure(
               code.name, "", "OK", code == grpc.StatusCode.OK, note=f"answered in {waited_s:.2f} s; "
               f"stream_yield_idle_s {YIELD_IDLE_S:g}, receive_wait_s 5"),
           idle_streams_ended_to_free_receive_room=figure(len(ended), "streams", note=f"of {RECEIVE_SLOTS}"))
    assert kept, "idle streams ended while nobody waited for their room"
    assert code == grpc.StatusCode.OK, "idle streams held the receive budget"
    assert waited_s < 4, f"waited {waited_s:.1f} s"
    assert ended and set(ended) == {grpc.StatusCode.UNAVAILABLE}, ended


@pytest.mark.timeout(60)
async def test_router_counts_each_stream_image_in_flight_when_admitting_prelabel(tmp_path):
    async with recording_services(delay_s=3.0) as (services, received), \
            router_process(tmp_path, services) as router, \
            grpc.aio.insecure_channel(router.address) as channel:
        stub = prelabel_pb2_grpc.PreLabelerStub(channel)
        call = stub.PreLabelStream(iter([item(i) for i in range(MAX_IN_FLIGHT)]), timeout=30)
        replies = asyncio.ensure_future(_collect(call))
        await until(lambda: received.in_flight == MAX_IN_FLIGHT, timeout_s=10)
        code, retry_after = await unary_code(stub)
        answered = await replies
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, "a stream with 4 images in flight counted as one"
    assert retry_after is not None
    assert [r.task_results[0].code for r in answered] == ["OK"] * MAX_IN_FLIGHT
    assert await call.code() == grpc.StatusCode.OK


async def _collect(call) -> list[prelabel_pb2.PreLabelResponse]:
    """The replies of a stream, up to its end (the end's code: `call.code()`)."""
    replies = []
    try:
        async for reply in call:
            replies.append(reply)
    except grpc.aio.AioRpcError:
        pass
    return replies


DRAIN_DELAY_S = 2.0
GRACE_S = 15.0


@pytest.mark.timeout(90)
async def test_router_finishes_stream_images_in_flight_and_reads_no_more_when_sigterm_arrives(tmp_path, record):
    async with recording_services(delay_s=DRAIN_DELAY_S) as (services, received), \
            router_process(tmp_path, services, PRELABEL_SHUTDOWN_GRACE_S=GRACE_S,
                           PRELABEL_MAX_IN_FLIGHT=64) as router, \
            grpc.aio.insecure_channel(router.address) as channel:
        window = 8  # RouterSettings.stream_window
        call = prelabel_pb2_grpc.PreLabelerStub(channel).PreLabelStream(
            iter([item(i) for i in range(100)]), timeout=60)
        replies = asyncio.ensure_future(_collect(call))
        await until(lambda: received.in_flight == window, timeout_s=10)
        signalled = time.perf_counter()
        router.process.send_signal(signal.SIGTERM)
        answered = await replies
        code = await call.code()
        exit_code = await asyncio.to_thread(router.process.wait, GRACE_S + 10)
        exit_s = time.perf_counter() - signalled
    forwarded = len(received.sizes)
    record("router_streams", stream_images_in_flight_at_sigterm=figure(window, "images"),
           stream_images_answered_after_sigterm=figure(len(answered), "images", f"= {window}", len(answered) == window),
           stream_images_forwarded_after_sigterm=figure(forwarded - window, "images", "0", forwarded == window),
           stream_end_code=figure(code.name, "", "UNAVAILABLE", code == grpc.StatusCode.UNAVAILABLE),
           stream_drain_exit_s=figure(exit_s, "s", f"< grace {GRACE_S:g}", exit_s < GRACE_S))
    assert [r.task_results[0].code for r in answered] == ["OK"] * window
    assert forwarded == window, f"{forwarded - window} images read and forwarded after SIGTERM"
    assert code == grpc.StatusCode.UNAVAILABLE
    assert exit_code == 0, router.log_tail()
    assert exit_s < GRACE_S, "the stream held the router for the whole grace"
