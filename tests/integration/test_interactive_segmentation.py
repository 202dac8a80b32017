"""Interactive segmentation (SegmentClick, ClickSession) on the CPU profile: a real
segmentation service over the real embedded tritonserver (whose segmenter config gives
GrabCut's probability), real photos, clicks checked by hand (tests/unit/test_grabcut_clicks
has the pictures' coordinates), the per-image state proved by its metrics, bad input."""
from __future__ import annotations

import asyncio
import hashlib
import math
from pathlib import Path

import grpc
import numpy as np
import pytest
import skimage.data
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from pycocotools import mask as coco_mask

from prelabel.v1 import common_pb2, segmentation_pb2, segmentation_pb2_grpc
from services.common.metrics import Metrics
from services.router.clicks import IMAGE_KEY
from services.segmentation.app import build_app
from services.segmentation.settings import SegmentationSettings
from tests.conftest import running, serving
from tests.grpc_helpers import bad_request_field, invalid_argument_field
from tests.photos import encode

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

RPC_TIMEOUT_S = 60
GRID = 256
#: An image on the 256 px grid is at most 256 * 256 * 3 bytes: the bound holds two.
STATE_BOUND = 2 * GRID * GRID * 3
KIND = f"grabcut-grid:{GRID}"
POSITIVE, NEGATIVE = segmentation_pb2.POINT_LABEL_POSITIVE, segmentation_pb2.POINT_LABEL_NEGATIVE


class Service:
    def __init__(self, address: str, stub: segmentation_pb2_grpc.SegmenterStub, metrics: Metrics):
        self.address, self.stub, self.metrics = address, stub, metrics

    def state(self, name: str) -> float:
        """A per-image state metric of the GrabCut grids (hits, misses, evictions, bytes)."""
        sample = f"prelabel_image_state_{name}" + ("" if name == "bytes" else "_total")
        value = self.metrics.registry.get_sample_value(sample, {"service": "segmentation", "kind": KIND})
        return value or 0.0


@pytest.fixture(scope="module")
async def service(triton):
    metrics = Metrics("segmentation")
    settings = SegmentationSettings(grpc_port=0, metrics_port=None, triton_url=triton.grpc_url,
                                    click_grid_max_side=GRID, click_state_max_bytes=STATE_BOUND,
                                    click_session_idle_s=3.0, click_max_sessions=2)
    async with running(build_app(settings, metrics)) as address, grpc.aio.insecure_channel(address) as channel:
        yield Service(address, segmentation_pb2_grpc.SegmenterStub(channel), metrics)


def coffee_png(variant: int = 0) -> bytes:
    """The coffee photo as PNG; `variant` changes one pixel, so the bytes (the state's
    key) differ while the picture stays the same."""
    image = skimage.data.coffee().copy()
    image[0, 0, 0] = variant % 256
    image[0, 1, 0] = variant // 256
    return encode(image, "PNG")


def point(x: float, y: float, label=POSITIVE) -> segmentation_pb2.PointPrompt:
    return segmentation_pb2.PointPrompt(x=x, y=y, label=label)


def mask_of(candidate: segmentation_pb2.MaskCandidate) -> np.ndarray:
    m = candidate.instance.mask
    return coco_mask.decode({"size": list(m.size), "counts": m.counts})


def click_request(data: bytes, *points, **prompt) -> segmentation_pb2.ClickRequest:
    return segmentation_pb2.ClickRequest(
        image=common_pb2.Image(data=data, image_id="coffee"),
        prompt=segmentation_pb2.ClickPrompt(points=list(points), **prompt))


async def test_a_session_clicks_gets_a_mask_and_refines_it_with_a_negative_click(service):
    """The README's session: open a stream, send the image, click the cup, then click the
    table the first mask took, with the first answer's low-res mask: the table is gone."""
    async def messages(answers: asyncio.Queue):
        yield segmentation_pb2.ClickSessionRequest(start=segmentation_pb2.ClickSessionStart(
            image=common_pb2.Image(data=coffee_png(1), image_id="coffee-1")))
        yield segmentation_pb2.ClickSessionRequest(click=segmentation_pb2.ClickPrompt(points=[point(300, 200)]))
        first = await answers.get()
        yield segmentation_pb2.ClickSessionRequest(click=segmentation_pb2.ClickPrompt(
            points=[point(300, 200), point(420, 385, NEGATIVE)],
            previous_mask=first.candidates[0].low_res_mask))

    answers: asyncio.Queue = asyncio.Queue()
    replies = []
    async for reply in service.stub.ClickSession(messages(answers), timeout=RPC_TIMEOUT_S):
        replies.append(reply)
        await answers.put(reply)
    assert len(replies) == 2
    first, second = (mask_of(r.candidates[0]) for r in replies)
    assert first.shape == (400, 600)
    assert first[200, 300] and first[385, 420], "the first mask holds the click and the table below the saucer"
    assert second[200, 300] and second[120, 250] and second[300, 200], "the refined mask keeps the cup"
    assert not second[385, 420] and not second[370, 440], "the negative click removed the table"
    for reply in replies:
        assert reply.image_id == "coffee-1"
        assert (reply.image_size.width, reply.image_size.height) == (600, 400)
        (candidate,) = reply.candidates
        instance = candidate.instance
        # GrabCut has no confidence: the served segmenter's grabcut_probability (0.6), a
        # little less at the mask's edge, where the grid is interpolated.
        assert 0.58 < instance.mask_quality <= 0.6 + 1e-6
        assert math.isclose(instance.detection.score, instance.mask_quality, abs_tol=1e-6)
        assert instance.detection.review == common_pb2.REVIEW_DECISION_NEEDS_REVIEW
        assert instance.detection.provenance.model_name == "grabcut"
        assert reply.provenance.model_name == "grabcut"
        assert instance.area == int(mask_of(candidate).sum())
        assert list(candidate.low_res_mask.shape) == [171, 256]
        assert len(candidate.low_res_mask.data) == 171 * 256


async def test_the_second_click_on_the_same_image_reuses_its_state(service):
    data = coffee_png(2)
    misses, hits = service.state("misses"), service.state("hits")
    first = await service.stub.SegmentClick(click_request(data, point(300, 200)), timeout=RPC_TIMEOUT_S)
    assert not first.image_state_reused
    assert (service.state("misses"), service.state("hits")) == (misses + 1, hits)
    second = await service.stub.SegmentClick(click_request(
        data, point(300, 200), point(420, 385, NEGATIVE), previous_mask=first.candidates[0].low_res_mask),
        timeout=RPC_TIMEOUT_S)
    assert second.image_state_reused
    assert (service.state("misses"), service.state("hits")) == (misses + 1, hits + 1), "not recomputed"
    assert mask_of(second.candidates[0])[200, 300] and not mask_of(second.candidates[0])[385, 420]


async def test_the_byte_bound_holds_and_an_evicted_image_is_prepared_again(service):
    evictions = service.state("evictions")
    for variant in range(10, 15):
        await service.stub.SegmentClick(click_request(coffee_png(variant), point(300, 200)), timeout=RPC_TIMEOUT_S)
        assert 0 < service.state("bytes") <= STATE_BOUND
    assert service.state("evictions") >= evictions + 3
    misses = service.state("misses")
    again = await service.stub.SegmentClick(click_request(coffee_png(10), point(300, 200)), timeout=RPC_TIMEOUT_S)
    assert not again.image_state_reused and service.state("misses") == misses + 1
    assert mask_of(again.candidates[0])[200, 300]


BAD_PROMPTS = {
    "outside the image": ((point(601, 200),), {}, "prompt.points"),
    "negative coordinate": ((point(-1, 200),), {}, "prompt.points"),
    "NaN": ((point(math.nan, 200),), {}, "prompt.points[0]"),
    "infinite": ((point(300, math.inf),), {}, "prompt.points[0]"),
    "1,000 points": (tuple(point(300, 200) for _ in range(1000)), {}, "prompt.points"),
    "no label": ((segmentation_pb2.PointPrompt(x=300, y=200),), {}, "prompt.points[0].label"),
    "nothing": ((), {}, "prompt"),
    "refinement mask of the wrong size": (
        (point(300, 200),), {"previous_mask": segmentation_pb2.LowResMask(data=bytes(64 * 64), shape=[64, 64])},
        "prompt.previous_mask.shape"),
    "refinement mask shorter than its shape": (
        (point(300, 200),), {"previous_mask": segmentation_pb2.LowResMask(data=bytes(10), shape=[171, 256])},
        "prompt.previous_mask.data"),
    "box outside the image": ((), {"box": common_pb2.Box(x_min=700, y_min=0, x_max=800, y_max=10)}, "prompt.box"),
    "box inverted": ((), {"box": common_pb2.Box(x_min=50, y_min=0, x_max=10, y_max=10)}, "prompt.box"),
    "mask threshold": ((point(300, 200),), {"mask_threshold": 1.0}, "prompt.mask_threshold"),
}


@pytest.mark.parametrize("case", sorted(BAD_PROMPTS))
async def test_a_bad_prompt_is_invalid_argument_naming_the_field(service, case):
    points, prompt, field = BAD_PROMPTS[case]
    request = click_request(coffee_png(3), *points, **prompt)
    assert await invalid_argument_field(service.stub.SegmentClick, request, RPC_TIMEOUT_S) == field


async def test_a_click_before_any_image_ends_the_session_invalid_argument(service):
    async def messages():
        yield segmentation_pb2.ClickSessionRequest(click=segmentation_pb2.ClickPrompt(points=[point(1, 1)]))

    with pytest.raises(grpc.aio.AioRpcError) as exc:
        async for _ in service.stub.ClickSession(messages(), timeout=RPC_TIMEOUT_S):
            pass
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_field(exc.value) == "click"


async def test_a_session_that_goes_quiet_ends_deadline_exceeded(service):
    """The client sends the image, gets nothing to answer, and never closes: the server's
    idle timeout (3 s here) ends the session instead of holding the image forever."""
    never = asyncio.Event()

    async def messages():
        yield segmentation_pb2.ClickSessionRequest(start=segmentation_pb2.ClickSessionStart(
            image=common_pb2.Image(data=coffee_png(4))))
        await never.wait()

    with pytest.raises(grpc.aio.AioRpcError) as exc:
        async for _ in service.stub.ClickSession(messages(), timeout=RPC_TIMEOUT_S):
            pass
    assert exc.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "no message for 3 s" in exc.value.details()


async def test_sessions_beyond_the_limit_are_refused_with_a_retry_hint(service):
    """Two sessions open (this service's limit): a third is RESOURCE_EXHAUSTED at once;
    once one closes, a new one is served."""
    release = asyncio.Event()

    async def held():
        yield segmentation_pb2.ClickSessionRequest(start=segmentation_pb2.ClickSessionStart(
            image=common_pb2.Image(data=coffee_png(6))))
        yield segmentation_pb2.ClickSessionRequest(click=segmentation_pb2.ClickPrompt(points=[point(300, 200)]))
        await release.wait()

    calls = [service.stub.ClickSession(held(), timeout=RPC_TIMEOUT_S) for _ in range(2)]
    for call in calls:
        await call.read()  # the first answer: the session is open
    async def silent():
        # Sends nothing: the refusal comes on arrival, before any message (a client still
        # sending its image when the server ends the call sees grpc's own INTERNAL instead).
        await release.wait()
        yield segmentation_pb2.ClickSessionRequest()

    third = service.stub.ClickSession(silent(), timeout=RPC_TIMEOUT_S)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await third.read()
        assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, exc.value.details()
        assert ("retry-after-ms", "200") in tuple(exc.value.trailing_metadata() or ())
    finally:
        release.set()
    for call in calls:
        assert await call.read() is grpc.aio.EOF
    again = service.stub.ClickSession(held(), timeout=RPC_TIMEOUT_S)
    assert (await again.read()).candidates
    again.cancel()


def readme_session() -> str:
    """The README's interactive session, as written there."""
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    after = text.split("<!-- interactive-session -->\n```python\n", 1)[1]
    return after.split("```", 1)[0]


async def test_the_readme_session_runs_and_refines_the_mask(service, tmp_path, monkeypatch, capsys):
    """The README's code, run as written against this test's service (its address and
    the coffee photo substituted): two answers, both drafts for review (what the refined
    mask holds is checked by the session test above)."""
    (tmp_path / "coffee.png").write_bytes(coffee_png(5))
    monkeypatch.chdir(tmp_path)
    code = readme_session().replace("127.0.0.1:50053", service.address)
    await asyncio.to_thread(exec, compile(code, "README.md", "exec"), {})
    lines = capsys.readouterr().out.split()
    areas, qualities, reviews = [int(a) for a in lines[0::3]], lines[1::3], lines[2::3]
    assert len(areas) == 2 and min(areas) > 0
    assert qualities == ["0.6", "0.6"] and reviews == ["REVIEW_DECISION_NEEDS_REVIEW"] * 2


@pytest.fixture(scope="module")
async def router_clicks(service):
    """The real router in front of this module's segmentation service (no detection or
    keypoints service: the router is ready while one service serves)."""
    async with serving("router", "RouterSettings", segmentation_addr=service.address,
                       detection_addr="127.0.0.1:9", keypoints_addr="127.0.0.1:9") as address, \
            grpc.aio.insecure_channel(address) as channel:
        yield segmentation_pb2_grpc.SegmenterStub(channel)


async def test_the_router_forwards_clicks_and_sessions(service, router_clicks):
    data = coffee_png(7)
    first = await router_clicks.SegmentClick(click_request(data, point(300, 200)), timeout=RPC_TIMEOUT_S)
    second = await router_clicks.SegmentClick(click_request(data, point(300, 200)), timeout=RPC_TIMEOUT_S)
    assert not first.image_state_reused and second.image_state_reused
    assert mask_of(second.candidates[0])[200, 300]

    async def messages():
        yield segmentation_pb2.ClickSessionRequest(start=segmentation_pb2.ClickSessionStart(
            image=common_pb2.Image(data=data, image_id="via-router")))
        yield segmentation_pb2.ClickSessionRequest(click=segmentation_pb2.ClickPrompt(points=[point(300, 200)]))

    replies = [r async for r in router_clicks.ClickSession(messages(), timeout=RPC_TIMEOUT_S)]
    assert [r.image_id for r in replies] == ["via-router"] and replies[0].image_state_reused


async def test_the_router_relays_a_bad_click_with_its_field(router_clicks):
    request = click_request(coffee_png(3), point(math.nan, 200))
    assert await invalid_argument_field(router_clicks.SegmentClick, request, RPC_TIMEOUT_S) == "prompt.points[0]"

    async def messages():
        yield segmentation_pb2.ClickSessionRequest(click=segmentation_pb2.ClickPrompt(points=[point(1, 1)]))

    with pytest.raises(grpc.aio.AioRpcError) as exc:
        async for _ in router_clicks.ClickSession(messages(), timeout=RPC_TIMEOUT_S):
            pass
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT and bad_request_field(exc.value) == "click"


async def test_the_router_refuses_a_session_beyond_max_click_sessions_with_a_retry_hint(service):
    """Each open session may receive a 20 MB image at any moment, so the router forwards
    at most max_click_sessions; one more is refused before its first message is read, and
    once a session ends a new one opens."""
    data = coffee_png(9)
    release = asyncio.Event()

    async def messages():
        yield segmentation_pb2.ClickSessionRequest(start=segmentation_pb2.ClickSessionStart(
            image=common_pb2.Image(data=data, image_id="held")))
        yield segmentation_pb2.ClickSessionRequest(click=segmentation_pb2.ClickPrompt(points=[point(300, 200)]))
        await release.wait()

    async with serving("router", "RouterSettings", segmentation_addr=service.address, max_click_sessions=1,
                       detection_addr="127.0.0.1:9", keypoints_addr="127.0.0.1:9") as address, \
            grpc.aio.insecure_channel(address) as channel:
        stub = segmentation_pb2_grpc.SegmenterStub(channel)
        held = stub.ClickSession(messages(), timeout=RPC_TIMEOUT_S)
        assert (await held.read()).image_id == "held"  # open, its click answered
        # Nothing written: a client still writing when the refusal comes is told INTERNAL
        # ("Internal error from Core") by gRPC's client instead (its failed write marks the
        # call so before the status arrives), which is what this refusal reads around.
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ClickSession(timeout=RPC_TIMEOUT_S).read()
        release.set()
        assert await held.read() is grpc.aio.EOF
        again = [r async for r in stub.ClickSession(messages(), timeout=RPC_TIMEOUT_S)]
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, refused.value
    assert "click sessions open (limit 1)" in refused.value.details()
    assert dict(refused.value.trailing_metadata())["retry-after-ms"]
    assert [r.image_id for r in again] == ["held"]


class RecordingSegmenter(segmentation_pb2_grpc.SegmenterServicer):
    """Stands for the proxy in front of the segmentation replicas, the only reader of the
    image key (the segmentation service ignores it), so a test double records it."""

    def __init__(self):
        self.keys: list[str] = []

    def _record(self, context) -> None:
        self.keys.append(dict(context.invocation_metadata()).get(IMAGE_KEY, ""))

    async def SegmentClick(self, request, context):
        self._record(context)
        return segmentation_pb2.ClickResponse()

    async def ClickSession(self, request_iterator, context):
        self._record(context)
        async for _ in request_iterator:
            yield segmentation_pb2.ClickResponse()


async def test_the_router_sends_the_image_key_a_proxy_hashes_by():
    recorder = RecordingSegmenter()
    server = grpc.aio.server()
    segmentation_pb2_grpc.add_SegmenterServicer_to_server(recorder, server)
    health_servicer = health.aio.HealthServicer()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with serving("router", "RouterSettings", segmentation_addr=f"127.0.0.1:{port}",
                           detection_addr="127.0.0.1:9", keypoints_addr="127.0.0.1:9") as address, \
                grpc.aio.insecure_channel(address) as channel:
            stub = segmentation_pb2_grpc.SegmenterStub(channel)
            data = coffee_png(8)
            await stub.SegmentClick(click_request(data, point(1, 1)), timeout=RPC_TIMEOUT_S)

            async def messages():
                yield segmentation_pb2.ClickSessionRequest(start=segmentation_pb2.ClickSessionStart(
                    image=common_pb2.Image(data=data)))

            assert len([r async for r in stub.ClickSession(messages(), timeout=RPC_TIMEOUT_S)]) == 1
    finally:
        await server.stop(None)
    assert recorder.keys == [hashlib.sha256(data).hexdigest()] * 2
