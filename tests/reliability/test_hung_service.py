"""A hung dependency: the segmentation service as a real process, stopped with SIGSTOP
(it keeps its TCP connections and answers nothing). The router must still reply before
the caller's deadline with the tasks that finished and the hung one DEADLINE_EXCEEDED,
for unary PreLabel and for each PreLabelStream item."""
from __future__ import annotations

import signal
import time

import grpc
import pytest

from prelabel.v1 import common_pb2, prelabel_pb2, prelabel_pb2_grpc
from tests.conftest import serving
from tests.reliability import corpus
from tests.reliability.conftest import service_process
from tests.reliability.report import figure

pytestmark = [pytest.mark.integration]

CALLER_DEADLINE_S = 4.0
STREAM_ITEM_TIMEOUT_S = 6.0
STREAM_ITEMS = 2
OTHER_TASKS = ("TASK_DETECT", "TASK_KEYPOINTS", "TASK_FACES")


def image(image_id: str) -> common_pb2.Image:
    return common_pb2.Image(data=corpus.encode(corpus.sample_photo((320, 240)), "JPEG", quality=90),
                            image_id=image_id)


def codes(reply: prelabel_pb2.PreLabelResponse) -> dict[str, str]:
    return {prelabel_pb2.Task.Name(r.task): r.code for r in reply.task_results}


@pytest.mark.timeout(240)
async def test_router_replies_before_deadline_with_finished_tasks_when_segmentation_is_stopped(
        triton, detection_address, keypoints_address, tmp_path, record):
    async with service_process("segmentation", tmp_path, PRELABEL_TRITON_URL=triton.grpc_url) as seg, \
            serving("router", "RouterSettings", detection_addr=detection_address,
                    segmentation_addr=seg.address, keypoints_addr=keypoints_address,
                    stream_item_timeout_s=STREAM_ITEM_TIMEOUT_S) as router_address, \
            grpc.aio.insecure_channel(router_address) as channel:
        router = prelabel_pb2_grpc.PreLabelerStub(channel)
        warm = await router.PreLabel(prelabel_pb2.PreLabelRequest(image=image("warm")), timeout=60)
        assert set(codes(warm).values()) == {"OK"}, codes(warm)

        seg.process.send_signal(signal.SIGSTOP)
        try:
            start = time.perf_counter()
            reply = await router.PreLabel(prelabel_pb2.PreLabelRequest(image=image("unary")),
                                          timeout=CALLER_DEADLINE_S)
            unary_s = time.perf_counter() - start

            start = time.perf_counter()
            stream_s = []
            stream_replies = []
            call = router.PreLabelStream(
                iter([prelabel_pb2.PreLabelRequest(image=image(f"s{i}")) for i in range(STREAM_ITEMS)]),
                timeout=60)
            async for item in call:
                stream_s.append(time.perf_counter() - start)
                stream_replies.append(item)
        finally:
            seg.process.send_signal(signal.SIGCONT)

    record("hung_service",
           caller_deadline_s=figure(CALLER_DEADLINE_S, "s", note="segmentation SIGSTOPped"),
           time_to_partial_reply_s=figure(unary_s, "s", f"< {CALLER_DEADLINE_S:.0f}",
                                          unary_s < CALLER_DEADLINE_S),
           stream_item_timeout_s=figure(STREAM_ITEM_TIMEOUT_S, "s"),
           stream_time_to_partial_item_s=figure(max(stream_s, default=float("nan")), "s",
                                                f"< {STREAM_ITEM_TIMEOUT_S:.0f}",
                                                bool(stream_s) and max(stream_s) < STREAM_ITEM_TIMEOUT_S))
    assert unary_s < CALLER_DEADLINE_S
    assert codes(reply)["TASK_SEGMENT"] == "DEADLINE_EXCEEDED", codes(reply)
    assert all(codes(reply)[t] == "OK" for t in OTHER_TASKS), codes(reply)
    assert len(stream_replies) == STREAM_ITEMS
    assert max(stream_s) < STREAM_ITEM_TIMEOUT_S, stream_s
    for item in stream_replies:  # the items share two CPUs: a slow task may time out too
        assert codes(item)["TASK_SEGMENT"] == "DEADLINE_EXCEEDED", codes(item)
        assert any(codes(item)[t] == "OK" for t in OTHER_TASKS), codes(item)
