"""The router's memory under concurrent 20 MB calls, as a real process: a call without a
token, or one that arrives when admission has no room, is refused on its metadata before
its request is read, so 128 of them at once keep the router's peak RSS far under its pod's
memory limit (k8s/base/router.yaml, read here); admitted calls are received a few at a
time (the receive budget) and held by the image-bytes budget, so they stay under it too."""
from __future__ import annotations

import asyncio
import json

import grpc
import pytest
import yaml

from prelabel.core.limits import MAX_IMAGE_BYTES
from prelabel.core.status import RETRY_AFTER_KEY
from prelabel.v1 import common_pb2, prelabel_pb2, prelabel_pb2_grpc, segmentation_pb2
from tests.conftest import REPO_ROOT
from tests.reliability.conftest import service_process
from tests.reliability.recording_services import recording_services
from tests.reliability.report import figure
from tests.reliability.test_payload_abuse import peak_rss_bytes
from tests.waiting import until

pytestmark = [pytest.mark.integration]

CALLS = 128
METHOD = "/prelabel.v1.PreLabeler/PreLabel"
UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


def pod_memory_limit_bytes(manifest: str, container: str) -> int:
    for doc in yaml.safe_load_all((REPO_ROOT / "k8s" / "base" / manifest).read_text()):
        if doc and doc.get("kind") == "Deployment":
            for c in doc["spec"]["template"]["spec"]["containers"]:
                if c["name"] == container:
                    limit = c["resources"]["limits"]["memory"]
                    return int(limit[:-2]) * UNITS[limit[-2:]]
    raise AssertionError(f"no memory limit for {container} in {manifest}")


async def raw_call(channel, payload: bytes, **kw) -> grpc.StatusCode:
    call = channel.unary_unary(METHOD, request_serializer=lambda b: b,
                               response_deserializer=prelabel_pb2.PreLabelResponse.FromString)
    try:
        await call(payload, timeout=60, **kw)
        return grpc.StatusCode.OK
    except grpc.aio.AioRpcError as err:
        return err.code()


def large_request() -> bytes:
    return prelabel_pb2.PreLabelRequest(image=common_pb2.Image(data=bytes(MAX_IMAGE_BYTES), image_id="big"),
                                        tasks=[prelabel_pb2.TASK_DETECT]).SerializeToString()


@pytest.mark.timeout(180)
async def test_router_stays_under_its_pod_limit_when_128_concurrent_20mb_calls_carry_no_token(tmp_path, record):
    limit = pod_memory_limit_bytes("router.yaml", "router")
    payload = large_request()
    async with recording_services() as (services, _), \
            service_process("router", tmp_path, PRELABEL_DETECTION_ADDR=services,
                            PRELABEL_SEGMENTATION_ADDR=services, PRELABEL_KEYPOINTS_ADDR=services,
                            PRELABEL_AUTH_TOKENS=json.dumps({"t": ["*"]})) as router, \
            grpc.aio.insecure_channel(router.address, options=[
                ("grpc.max_send_message_length", 64 * 2**20)]) as channel:
        before = peak_rss_bytes(router.process.pid)
        codes = await asyncio.gather(*(raw_call(channel, payload) for _ in range(CALLS)))
        peak = peak_rss_bytes(router.process.pid)
    record("router_memory", unauthenticated_20mb_calls=figure(CALLS, "concurrent calls"),
           unauthenticated_peak_rss_mb=figure(peak / 2**20, "MB", f"< pod limit {limit >> 20} MiB / 2",
                                              peak < limit / 2, note=f"{before / 2**20:.0f} MB before"))
    assert set(codes) == {grpc.StatusCode.UNAUTHENTICATED}, codes
    assert peak < limit / 2, f"router peak RSS {peak / 2**20:.0f} MB (pod limit {limit >> 20} MiB)"


@pytest.mark.timeout(180)
async def test_router_refuses_20mb_calls_before_reading_them_when_admission_is_full(tmp_path, record):
    limit = pod_memory_limit_bytes("router.yaml", "router")
    payload = large_request()
    small = prelabel_pb2.PreLabelRequest(image=common_pb2.Image(data=b"image", image_id="small"),
                                         tasks=[prelabel_pb2.TASK_DETECT]).SerializeToString()
    async with recording_services(delay_s=20.0) as (services, received), \
            service_process("router", tmp_path, PRELABEL_DETECTION_ADDR=services,
                            PRELABEL_SEGMENTATION_ADDR=services, PRELABEL_KEYPOINTS_ADDR=services,
                            PRELABEL_MAX_IN_FLIGHT=4) as router, \
            grpc.aio.insecure_channel(router.address, options=[
                ("grpc.max_send_message_length", 64 * 2**20)]) as channel:
        holding = [asyncio.ensure_future(raw_call(channel, small)) for _ in range(4)]
        await until(lambda: received.in_flight == 4, timeout_s=10)
        before = peak_rss_bytes(router.process.pid)
        codes = await asyncio.gather(*(raw_call(channel, payload) for _ in range(CALLS)))
        peak = peak_rss_bytes(router.process.pid)
        for call in holding:
            call.cancel()
    record("router_memory", refused_20mb_calls_peak_rss_mb=figure(
        peak / 2**20, "MB", f"< pod limit {limit >> 20} MiB / 2", peak < limit / 2,
        note=f"{CALLS} concurrent calls, admission full; {before / 2**20:.0f} MB before"))
    assert set(codes) == {grpc.StatusCode.RESOURCE_EXHAUSTED}, codes
    assert peak < limit / 2, f"router peak RSS {peak / 2**20:.0f} MB (pod limit {limit >> 20} MiB)"


ADMITTED_CALLS = 8


@pytest.mark.timeout(180)
async def test_router_stays_under_its_pod_limit_when_8_admitted_20mb_calls_fan_out_to_every_task(
        tmp_path, record):
    """Admitted (a token is not required here), each asking for every task: without the
    image-bytes budget each held ~280 MB of copies until the services answered."""
    limit = pod_memory_limit_bytes("router.yaml", "router")
    payload = prelabel_pb2.PreLabelRequest(image=common_pb2.Image(data=bytes(MAX_IMAGE_BYTES), image_id="big"),
                                           ).SerializeToString()  # no task named: all four
    async with recording_services(delay_s=1.0) as (services, received), \
            service_process("router", tmp_path, PRELABEL_DETECTION_ADDR=services,
                            PRELABEL_SEGMENTATION_ADDR=services, PRELABEL_KEYPOINTS_ADDR=services) as router, \
            grpc.aio.insecure_channel(router.address, options=[
                ("grpc.max_send_message_length", 64 * 2**20)]) as channel:
        codes = await asyncio.gather(*(raw_call(channel, payload) for _ in range(ADMITTED_CALLS)))
        peak = peak_rss_bytes(router.process.pid)
    record("router_memory", admitted_20mb_four_task_calls_peak_rss_mb=figure(
        peak / 2**20, "MB", f"< pod limit {limit >> 20} MiB", peak < limit,
        note=f"{ADMITTED_CALLS} concurrent; {codes.count(grpc.StatusCode.OK)} answered, the rest "
             "RESOURCE_EXHAUSTED with a retry hint"))
    assert grpc.StatusCode.OK in codes
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, codes
    assert len(received.sizes) == 4 * codes.count(grpc.StatusCode.OK)
    assert peak < limit, f"router peak RSS {peak / 2**20:.0f} MB (pod limit {limit >> 20} MiB)"


RECEIVED_CALLS = 32
SMALL_CALLS = 8


async def hinted_call(channel, payload: bytes, method: str = METHOD) -> tuple[grpc.StatusCode, str | None]:
    """The call's code and its retry hint (trailing metadata), if any."""
    call = channel.unary_unary(method, request_serializer=lambda b: b, response_deserializer=lambda b: b)
    try:
        await call(payload, timeout=60)
        return grpc.StatusCode.OK, None
    except grpc.aio.AioRpcError as err:
        return err.code(), dict(err.trailing_metadata() or ()).get(RETRY_AFTER_KEY)


@pytest.mark.timeout(180)
async def test_router_stays_under_its_pod_limit_when_32_admitted_20mb_calls_arrive_at_once(tmp_path, record):
    """All admitted on metadata (64 may be in flight) and each received whole before this
    change: ~47 MB each while gRPC buffered and Python parsed it, before the image-bytes
    budget could refuse it (32 of them: 1,694 MB peak). Now each waits for room in the
    receive budget before its bytes are read; small calls among them still get through."""
    limit = pod_memory_limit_bytes("router.yaml", "router")
    big = large_request()
    small = prelabel_pb2.PreLabelRequest(image=common_pb2.Image(data=bytes(100_000), image_id="small"),
                                         tasks=[prelabel_pb2.TASK_DETECT]).SerializeToString()
    async with recording_services(delay_s=1.0) as (services, _), \
            service_process("router", tmp_path, PRELABEL_DETECTION_ADDR=services,
                            PRELABEL_SEGMENTATION_ADDR=services, PRELABEL_KEYPOINTS_ADDR=services) as router, \
            grpc.aio.insecure_channel(router.address, options=[
                ("grpc.max_send_message_length", 64 * 2**20)]) as channel:
        before = peak_rss_bytes(router.process.pid)
        calls = [asyncio.ensure_future(hinted_call(channel, big)) for _ in range(RECEIVED_CALLS)]
        smalls = []
        for _ in range(SMALL_CALLS):  # among the big ones: sent while they are received
            await asyncio.sleep(0.1)
            smalls.append(asyncio.ensure_future(hinted_call(channel, small)))
        big_results, small_results = await asyncio.gather(asyncio.gather(*calls), asyncio.gather(*smalls))
        peak = peak_rss_bytes(router.process.pid)
        await asyncio.sleep(1.0)
        after = router.rss_bytes()
    answered = [code for code, _ in big_results].count(grpc.StatusCode.OK)
    record("router_memory", admitted_20mb_calls=figure(RECEIVED_CALLS, "concurrent calls",
                                                       note=f"{answered} answered, the rest RESOURCE_EXHAUSTED "
                                                            "with a retry hint; 1,694 MB peak before the receive budget"),
           admitted_20mb_calls_peak_rss_mb=figure(peak / 2**20, "MB", f"< pod limit {limit >> 20} MiB", peak < limit,
                                                  note=f"{before / 2**20:.0f} MB before"),
           admitted_20mb_calls_100kb_calls_among_them_answered=figure(
               [code for code, _ in small_results].count(grpc.StatusCode.OK), f"of {SMALL_CALLS}",
               f"{SMALL_CALLS}", all(code == grpc.StatusCode.OK for code, _ in small_results)),
           admitted_20mb_calls_rss_after_mb=figure(after / 2**20, "MB", "< before + 128",
                                                   after < before + 128 * 2**20,
                                                   note="1 s after the burst; 257-515 MB kept without the trim"))
    assert answered >= 1, big_results
    for code, hint in big_results:
        assert code == grpc.StatusCode.OK or (code == grpc.StatusCode.RESOURCE_EXHAUSTED and hint), big_results
    assert [code for code, _ in small_results] == [grpc.StatusCode.OK] * SMALL_CALLS, small_results
    assert peak < limit, f"router peak RSS {peak / 2**20:.0f} MB (pod limit {limit >> 20} MiB)"
    assert after < before + 128 * 2**20, f"RSS {after / 2**20:.0f} MB after the burst ({before / 2**20:.0f} before)"


@pytest.mark.timeout(180)
async def test_router_stays_under_its_pod_limit_when_32_20mb_segment_clicks_arrive_at_once(tmp_path, record):
    """Forwarded to the segmentation service: without the image-bytes budget every admitted
    click held its image's copies until the service answered (32 of them: 1,216-1,378 MB peak)."""
    limit = pod_memory_limit_bytes("router.yaml", "router")
    click = segmentation_pb2.ClickRequest(image=common_pb2.Image(data=bytes(MAX_IMAGE_BYTES), image_id="big"),
                                          ).SerializeToString()
    async with recording_services(delay_s=1.0) as (services, received), \
            service_process("router", tmp_path, PRELABEL_DETECTION_ADDR=services,
                            PRELABEL_SEGMENTATION_ADDR=services, PRELABEL_KEYPOINTS_ADDR=services) as router, \
            grpc.aio.insecure_channel(router.address, options=[
                ("grpc.max_send_message_length", 64 * 2**20)]) as channel:
        results = await asyncio.gather(*(hinted_call(channel, click, "/prelabel.v1.Segmenter/SegmentClick")
                                         for _ in range(RECEIVED_CALLS)))
        peak = peak_rss_bytes(router.process.pid)
    answered = [code for code, _ in results].count(grpc.StatusCode.OK)
    record("router_memory", segment_click_20mb_peak_rss_mb=figure(
        peak / 2**20, "MB", f"< pod limit {limit >> 20} MiB", peak < limit,
        note=f"{RECEIVED_CALLS} concurrent SegmentClick calls; {answered} answered, the rest RESOURCE_EXHAUSTED "
             "with a retry hint; 1,216-1,378 MB peak before"))
    assert answered >= 1 and len(received.sizes) == answered, results
    for code, hint in results:
        assert code == grpc.StatusCode.OK or (code == grpc.StatusCode.RESOURCE_EXHAUSTED and hint), results
    assert peak < limit, f"router peak RSS {peak / 2**20:.0f} MB (pod limit {limit >> 20} MiB)"


@pytest.mark.timeout(60)
async def test_a_call_that_never_sends_its_request_gives_its_room_back_at_the_default_timeout(tmp_path):
    """A unary call now holds an admission slot and a share of the receive budget while its
    request is read: one whose request never comes (no deadline either) must end, not keep
    them for ever. Two such calls fill both; each ends DEADLINE_EXCEEDED after
    default_timeout_s, and then a call gets through."""
    small = prelabel_pb2.PreLabelRequest(image=common_pb2.Image(data=b"image", image_id="small"),
                                         tasks=[prelabel_pb2.TASK_DETECT]).SerializeToString()
    async with recording_services() as (services, _), \
            service_process("router", tmp_path, PRELABEL_DETECTION_ADDR=services,
                            PRELABEL_SEGMENTATION_ADDR=services, PRELABEL_KEYPOINTS_ADDR=services,
                            PRELABEL_DEFAULT_TIMEOUT_S=2, PRELABEL_MAX_IN_FLIGHT=2) as router, \
            grpc.aio.insecure_channel(router.address) as channel:
        silent = channel.stream_unary(METHOD, request_serializer=lambda b: b,
                                      response_deserializer=prelabel_pb2.PreLabelResponse.FromString)
        calls = [silent() for _ in range(2)]  # headers sent, no message, no deadline
        await asyncio.sleep(0.5)
        assert await raw_call(channel, small) == grpc.StatusCode.RESOURCE_EXHAUSTED  # both slots held
        for call in calls:
            with pytest.raises(grpc.aio.AioRpcError) as ended:
                await asyncio.wait_for(call, timeout=10)
            assert ended.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED, ended.value
        assert await raw_call(channel, small) == grpc.StatusCode.OK


async def one_item_stream(stub, request: prelabel_pb2.PreLabelRequest) -> tuple[grpc.StatusCode, list[str]]:
    """One PreLabelStream that sends `request` and closes: the stream's own status and
    each task's code in the one answer (an overloaded item comes back as a failed item)."""
    async def items():
        yield request
    try:
        codes = []
        async for response in stub.PreLabelStream(items(), timeout=60):
            codes += [result.code for result in response.task_results]
        return grpc.StatusCode.OK, codes
    except grpc.aio.AioRpcError as err:
        return err.code(), []


@pytest.mark.timeout(180)
async def test_router_stays_under_its_pod_limit_when_32_streams_each_send_a_20mb_image_at_once(tmp_path, record):
    """Stream items were read as they came, outside the receive budget: 32 streams with one
    20 MB image each took the router to 1,417 MB. Each read now waits for room in the
    receive budget like a unary call (the stream's other images keep flowing meanwhile)."""
    limit = pod_memory_limit_bytes("router.yaml", "router")
    big = prelabel_pb2.PreLabelRequest(image=common_pb2.Image(data=bytes(MAX_IMAGE_BYTES), image_id="big"),
                                       tasks=[prelabel_pb2.TASK_DETECT])
    async with recording_services(delay_s=1.0) as (services, received), \
            service_process("router", tmp_path, PRELABEL_DETECTION_ADDR=services,
                            PRELABEL_SEGMENTATION_ADDR=services, PRELABEL_KEYPOINTS_ADDR=services) as router, \
            grpc.aio.insecure_channel(router.address, options=[
                ("grpc.max_send_message_length", 64 * 2**20)]) as channel:
        stub = prelabel_pb2_grpc.PreLabelerStub(channel)
        before = peak_rss_bytes(router.process.pid)
        results = await asyncio.gather(*(one_item_stream(stub, big) for _ in range(RECEIVED_CALLS)))
        peak = peak_rss_bytes(router.process.pid)
    answered = sum(codes == ["OK"] for _, codes in results)
    record("router_memory", stream_20mb_items_peak_rss_mb=figure(
        peak / 2**20, "MB", f"< pod limit {limit >> 20} MiB", peak < limit,
        note=f"{RECEIVED_CALLS} concurrent PreLabelStream calls, one 20 MB image each; {answered} answered, the "
             f"rest RESOURCE_EXHAUSTED items; {before / 2**20:.0f} MB before; 1,276-1,417 MB peak before the change"))
    assert {code for code, _ in results} == {grpc.StatusCode.OK}, results
    assert answered >= 1 and len(received.sizes) == answered, results
    assert all(codes in (["OK"], ["RESOURCE_EXHAUSTED"]) for _, codes in results), results
    assert peak < limit, f"router peak RSS {peak / 2**20:.0f} MB (pod limit {limit >> 20} MiB)"


SESSIONS = 32
MAX_CLICK_SESSIONS = 8  # RouterSettings.max_click_sessions


async def held_session(channel, start: bytes, hold: asyncio.Event) -> tuple[grpc.StatusCode, str | None, int]:
    """A ClickSession that sends `start` and stays open, idle, until `hold` is set: its
    code, retry hint and replies."""
    call = channel.stream_stream("/prelabel.v1.Segmenter/ClickSession", request_serializer=lambda b: b,
                                 response_deserializer=lambda b: b)

    async def messages():
        yield start
        await hold.wait()
    session = call(messages(), timeout=60)
    replies = 0
    try:
        async for _ in session:
            replies += 1
        return grpc.StatusCode.OK, None, replies
    except grpc.aio.AioRpcError as err:
        return err.code(), dict(err.trailing_metadata() or ()).get(RETRY_AFTER_KEY), replies


@pytest.mark.timeout(180)
async def test_router_stays_under_its_pod_limit_when_32_click_sessions_each_open_with_a_20mb_image(
        tmp_path, record):
    """A session is idle between clicks by nature, so it cannot wait its turn in the receive
    budget the way a bulk stream's read does (it would hold the room while the annotator
    thinks); the router forwards at most `max_click_sessions` at once instead, refusing more
    before reading anything, and keeps no message it has forwarded. Before: every session's
    start image was read, and the last message of each open session stayed referenced."""
    limit = pod_memory_limit_bytes("router.yaml", "router")
    start = segmentation_pb2.ClickSessionRequest(start=segmentation_pb2.ClickSessionStart(
        image=common_pb2.Image(data=bytes(MAX_IMAGE_BYTES), image_id="big"))).SerializeToString()
    hold = asyncio.Event()
    async with recording_services() as (services, received), \
            service_process("router", tmp_path, PRELABEL_DETECTION_ADDR=services,
                            PRELABEL_SEGMENTATION_ADDR=services, PRELABEL_KEYPOINTS_ADDR=services) as router, \
            grpc.aio.insecure_channel(router.address, options=[
                ("grpc.max_send_message_length", 64 * 2**20)]) as channel:
        before = peak_rss_bytes(router.process.pid)
        sessions = [asyncio.ensure_future(held_session(channel, start, hold)) for _ in range(SESSIONS)]
        await until(lambda: sum(s.done() for s in sessions) + len(received.sizes) >= SESSIONS, timeout_s=60)
        await asyncio.sleep(1.0)  # the open sessions idle, holding what they hold
        peak = peak_rss_bytes(router.process.pid)
        hold.set()
        results = await asyncio.gather(*sessions)
    forwarded = len(received.sizes)
    record("router_memory", click_sessions_20mb_peak_rss_mb=figure(
        peak / 2**20, "MB", f"< pod limit {limit >> 20} MiB", peak < limit,
        note=f"{SESSIONS} concurrent ClickSessions opening with a 20 MB image; {forwarded} forwarded, the rest "
             f"RESOURCE_EXHAUSTED with a retry hint; {before / 2**20:.0f} MB before"))
    # A refused session's client is still writing its 20 MB start (the router never reads
    # it), and gRPC's client then reports INTERNAL ("Internal error from Core") rather than
    # the RESOURCE_EXHAUSTED the router answered, as for any stream refused before its
    # first large message is read; a small first message sees RESOURCE_EXHAUSTED with the
    # retry hint (tests/integration/test_interactive_segmentation.py).
    for code, hint, replies in results:
        assert (code, replies) == (grpc.StatusCode.OK, 1) or (
            (code == grpc.StatusCode.INTERNAL or (code == grpc.StatusCode.RESOURCE_EXHAUSTED and hint))
            and not replies), results
    assert 1 <= forwarded <= MAX_CLICK_SESSIONS, results
    assert forwarded == sum(code == grpc.StatusCode.OK for code, _, _ in results), results
    assert peak < limit, f"router peak RSS {peak / 2**20:.0f} MB (pod limit {limit >> 20} MiB)"


@pytest.mark.timeout(180)
async def test_router_stays_under_its_pod_limit_when_every_kind_of_20mb_call_arrives_at_once(tmp_path, record):
    """The caps together: 32 unary PreLabel, 32 PreLabelStream items, 32 SegmentClick and 32
    ClickSession starts, all 20 MB and at once, against one router at its default settings."""
    limit = pod_memory_limit_bytes("router.yaml", "router")
    big = prelabel_pb2.PreLabelRequest(image=common_pb2.Image(data=bytes(MAX_IMAGE_BYTES), image_id="big"),
                                       tasks=[prelabel_pb2.TASK_DETECT])
    click = segmentation_pb2.ClickRequest(image=common_pb2.Image(data=bytes(MAX_IMAGE_BYTES), image_id="big"),
                                          ).SerializeToString()
    start = segmentation_pb2.ClickSessionRequest(start=segmentation_pb2.ClickSessionStart(
        image=common_pb2.Image(data=bytes(MAX_IMAGE_BYTES), image_id="big"))).SerializeToString()
    hold = asyncio.Event()
    async with recording_services(delay_s=1.0) as (services, received), \
            service_process("router", tmp_path, PRELABEL_DETECTION_ADDR=services,
                            PRELABEL_SEGMENTATION_ADDR=services, PRELABEL_KEYPOINTS_ADDR=services) as router, \
            grpc.aio.insecure_channel(router.address, options=[
                ("grpc.max_send_message_length", 64 * 2**20)]) as channel:
        stub = prelabel_pb2_grpc.PreLabelerStub(channel)
        before = peak_rss_bytes(router.process.pid)
        sessions = [asyncio.ensure_future(held_session(channel, start, hold)) for _ in range(RECEIVED_CALLS)]
        calls = await asyncio.gather(
            *(hinted_call(channel, big.SerializeToString()) for _ in range(RECEIVED_CALLS)),
            *(one_item_stream(stub, big) for _ in range(RECEIVED_CALLS)),
            *(hinted_call(channel, click, "/prelabel.v1.Segmenter/SegmentClick") for _ in range(RECEIVED_CALLS)))
        await asyncio.sleep(1.0)
        peak = peak_rss_bytes(router.process.pid)
        hold.set()
        await asyncio.gather(*sessions)
    record("router_memory", every_kind_20mb_peak_rss_mb=figure(
        peak / 2**20, "MB", f"< pod limit {limit >> 20} MiB", peak < limit,
        note=f"{4 * RECEIVED_CALLS} concurrent calls, 32 of each kind; {len(received.sizes)} forwarded; "
             f"{before / 2**20:.0f} MB before"))
    assert len(received.sizes) >= 4, calls
    assert peak < limit, f"router peak RSS {peak / 2**20:.0f} MB (pod limit {limit >> 20} MiB)"
