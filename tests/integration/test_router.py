"""Router: fan-out, deadline propagation, partial results, flow control."""
from __future__ import annotations

import asyncio
import contextlib
import time

import grpc
import pytest

from prelabel.v1 import common_pb2, prelabel_pb2, prelabel_pb2_grpc
from services.common.metrics import Metrics
from services.embedded_triton.launcher import free_port
from services.router.app import build_app
from services.router.settings import RouterSettings
from tests.conftest import running
from tests.integration.slow_services import slow_service

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

IMAGE = common_pb2.Image(data=b"bytes the stand-ins do not decode", image_id="img-1")


@contextlib.asynccontextmanager
async def router_over(det: str, seg: str, kp: str, wait_ready: bool = True, **kw):
    settings = RouterSettings(grpc_port=0, metrics_port=None, detection_addr=det, segmentation_addr=seg,
                              keypoints_addr=kp, **kw)
    # No BDP probing: the client's HTTP/2 window stays at its 64 KB start.
    async with running(build_app(settings, Metrics("router")), wait_ready=wait_ready) as address, \
            grpc.aio.insecure_channel(address, options=[("grpc.http2.bdp_probe", 0)]) as channel:
        yield prelabel_pb2_grpc.PreLabelerStub(channel)


@contextlib.asynccontextmanager
async def three_slow(delay_s: float):
    async with slow_service("detection", delay_s) as (d, rd), \
            slow_service("segmentation", delay_s) as (s, rs), \
            slow_service("keypoints", delay_s) as (k, rk):
        yield (d, s, k), (rd, rs, rk)


async def test_prelabel_takes_about_max_not_sum_when_services_each_take_t():
    t = 0.3
    async with three_slow(t) as (addrs, recs), router_over(*addrs) as router:
        start = time.perf_counter()
        reply = await router.PreLabel(prelabel_pb2.PreLabelRequest(image=IMAGE), timeout=10)
        elapsed = time.perf_counter() - start
    assert [r.code for r in reply.task_results] == ["OK"] * 4
    assert sum(r.calls for r in recs) == 4  # keypoints serves persons and faces
    assert t <= elapsed < t * 1.5, f"{elapsed:.3f}s for 4 tasks of {t}s each"


async def test_prelabel_cascade_prompts_segmentation_and_keypoints_with_detected_boxes():
    async with three_slow(0.05) as (addrs, recs), router_over(*addrs) as router:
        reply = await router.PreLabel(prelabel_pb2.PreLabelRequest(
            image=IMAGE, cascade=True,
            tasks=[prelabel_pb2.TASK_DETECT, prelabel_pb2.TASK_SEGMENT, prelabel_pb2.TASK_KEYPOINTS]), timeout=10)
    assert [r.code for r in reply.task_results] == ["OK"] * 3
    assert len(reply.detections) == 1
    assert [r.calls for r in recs] == [1, 1, 1]


async def test_prelabel_passes_only_remaining_deadline_to_every_hop_when_caller_sets_one():
    async with three_slow(2.0) as (addrs, recs), router_over(*addrs) as router:
        start = time.perf_counter()
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await router.PreLabel(prelabel_pb2.PreLabelRequest(image=IMAGE), timeout=0.4)
        elapsed = time.perf_counter() - start
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert elapsed < 0.4 + 0.2
    remaining = [x for r in recs for x in r.time_remaining]
    # Every hop got a deadline, and none later than the caller's (within the ~1 ms
    # resolution of gRPC's timeout header and clock reads).
    assert remaining and all(x is not None and 0 < x <= 0.4 + 0.01 for x in remaining), remaining


async def test_prelabel_uses_default_deadline_on_every_hop_when_caller_sets_none():
    async with three_slow(0.01) as (addrs, recs), router_over(*addrs, default_timeout_s=7) as router:
        await router.PreLabel(prelabel_pb2.PreLabelRequest(image=IMAGE))
    remaining = [x for r in recs for x in r.time_remaining]
    assert all(x is not None and 0 < x <= 7.05 for x in remaining), remaining  # clock jitter


async def test_prelabel_returns_partial_results_then_full_when_a_service_returns():
    seg_port = free_port()
    async with slow_service("detection", 0.01) as (d, _), slow_service("keypoints", 0.01) as (k, _), \
            router_over(d, f"127.0.0.1:{seg_port}", k) as router:
        reply = await router.PreLabel(prelabel_pb2.PreLabelRequest(image=IMAGE), timeout=5)
        codes = {prelabel_pb2.Task.Name(r.task): r.code for r in reply.task_results}
        assert codes == {"TASK_DETECT": "OK", "TASK_SEGMENT": "UNAVAILABLE", "TASK_KEYPOINTS": "OK",
                         "TASK_FACES": "OK"}
        assert len(reply.detections) == 1
        async with slow_service("segmentation", 0.01, port=seg_port):
            deadline = time.monotonic() + 20
            while True:  # the channel reconnects with backoff
                reply = await router.PreLabel(prelabel_pb2.PreLabelRequest(image=IMAGE), timeout=5)
                if all(r.code == "OK" for r in reply.task_results) or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.3)
        assert all(r.code == "OK" for r in reply.task_results), reply.task_results


async def test_prelabel_fails_with_unavailable_when_every_service_down():
    dead = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    async with router_over(*dead, wait_ready=False) as router:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await router.PreLabel(prelabel_pb2.PreLabelRequest(image=IMAGE), timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_prelabel_stream_reads_no_further_than_window_when_consumer_slow():
    # ~100 KB per result: more than gRPC's 64 KB HTTP/2 window, so what the router has
    # started beyond what we consumed is its own window (plus a result in transit).
    window, total = 4, 30
    async with slow_service("detection", 0.01, detections_per_reply=2000) as (d, det_rec), \
            slow_service("segmentation", 0.01) as (s, _), slow_service("keypoints", 0.01) as (k, _), \
            router_over(d, s, k, stream_window=window) as router:
        recs = [det_rec]
        sent = 0

        async def requests():
            nonlocal sent
            for i in range(total):
                sent += 1
                yield prelabel_pb2.PreLabelRequest(
                    image=common_pb2.Image(data=b"x", image_id=f"img-{i}"), tasks=[prelabel_pb2.TASK_DETECT])

        call = router.PreLabelStream(requests(), timeout=60)
        received = []
        async for reply in call:
            received.append(reply.image_id)
            await asyncio.sleep(0.05)  # slow consumer
            # images the router has started on, minus those we have consumed, stays bounded
            started = recs[0].calls
            assert started - len(received) <= window + 2, (started, len(received))
        assert sorted(received) == sorted(f"img-{i}" for i in range(total))
        assert set(recs[0].priorities) == {common_pb2.PRIORITY_BULK}


async def test_prelabel_stream_delivers_every_item_without_stalling_when_window_small():
    """Regression: a done-callback shadowed by a local of the same name made the stream
    hold finished items until the client gave up (annotate stalled 3 min per window)."""
    async with three_slow(0.01) as (addrs, _), router_over(*addrs, stream_window=2) as router:
        async def requests():
            for i in range(16):
                yield prelabel_pb2.PreLabelRequest(image=common_pb2.Image(data=b"x", image_id=f"img-{i}"),
                                                   tasks=[prelabel_pb2.TASK_DETECT])
                await asyncio.sleep(0.02)  # items keep arriving while results are written

        replies = [r async for r in router.PreLabelStream(requests(), timeout=20)]
    assert sorted(r.image_id for r in replies) == sorted(f"img-{i}" for i in range(16))


async def test_prelabel_stream_reports_per_image_error_and_continues_when_image_id_missing():
    async with three_slow(0.01) as (addrs, _), router_over(*addrs) as router:
        async def requests():
            yield prelabel_pb2.PreLabelRequest(image=common_pb2.Image(data=b"x"), tasks=[prelabel_pb2.TASK_DETECT])
            yield prelabel_pb2.PreLabelRequest(image=common_pb2.Image(data=b"x", image_id="ok"),
                                               tasks=[prelabel_pb2.TASK_DETECT])

        replies = [r async for r in router.PreLabelStream(requests(), timeout=20)]
    codes = sorted((r.image_id, r.task_results[0].code) for r in replies)
    assert codes == [("", "INVALID_ARGUMENT"), ("ok", "OK")]


async def test_prelabel_real_services_return_every_task_with_provenance_when_photo(router):
    from tests.photos import photo_bytes

    reply = await router.PreLabel(prelabel_pb2.PreLabelRequest(
        image=common_pb2.Image(data=photo_bytes("astronaut.png"), image_id="astronaut")), timeout=120)
    assert reply.image_id == "astronaut"
    assert [r.code for r in reply.task_results] == ["OK"] * 4, reply.task_results
    assert (reply.image_size.width, reply.image_size.height) == (512, 512)
    assert reply.faces, "MTCNN (real weights) finds the astronaut's face"
    face = reply.faces[0]
    assert face.detection.provenance.weights == common_pb2.WEIGHTS_PRETRAINED
    assert len(face.keypoints) == 5
    labels = [*reply.detections, *(m.detection for m in reply.masks),
              *(k.detection for k in reply.person_keypoints), *(f.detection for f in reply.faces)]
    assert all(d.provenance.model_name and d.provenance.weights != common_pb2.WEIGHTS_UNSPECIFIED
               for d in labels)
    # every task says which model served it, even one that returned no labels
    assert {r.provenance.model_name for r in reply.task_results} == {
        "coco_detector", "segmenter", "keypointer", "face_detector"}
    assert {s.name for s in reply.keypoint_schemas} == {"coco_person_17", "face_5"}


async def test_prelabel_real_services_reject_bad_image_with_field_when_all_tasks_fail(router):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await router.PreLabel(prelabel_pb2.PreLabelRequest(image=common_pb2.Image(data=b"not an image")),
                              timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "image.data" in err.value.details()
