"""Prompted segmentation against a real segmentation process: the work one request may
ask for is bounded (mask pixels, polygon vertices), and the mask pasting stops when the
call's deadline passes instead of running on in its worker thread."""
from __future__ import annotations

import asyncio
import io
import time

import grpc
import numpy as np
import pytest
from PIL import Image

from prelabel.v1 import common_pb2, segmentation_pb2, segmentation_pb2_grpc
from tests.reliability.conftest import service_process
from tests.reliability.report import figure

pytestmark = [pytest.mark.integration]

SIDE = 6000  # 36 MP: at the default pixel cap
MAX_PROMPTS = 32
# The deadline check runs with a raised pixel bound, so that the work left when the
# deadline passes is seconds of CPU (about what the issue measured), not a fraction.
LONG_PROMPTS = 16
AFTER_DEADLINE_WATCH_S = 3.0
CPU_AFTER_DEADLINE_LIMIT_S = 0.5


def big_jpeg() -> bytes:
    """A smooth 6000x6000 JPEG (small on the wire, full size once decoded)."""
    ramp = np.linspace(0, 255, SIDE, dtype=np.float32)
    pixels = np.stack([np.add.outer(ramp, ramp) / 2, np.add.outer(ramp, -ramp) % 256,
                       np.tile(ramp, (SIDE, 1))], axis=-1).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(out, "JPEG", quality=80)
    return out.getvalue()


def full_image_prompts(count: int) -> list[segmentation_pb2.BoxPrompt]:
    return [segmentation_pb2.BoxPrompt(box=common_pb2.Box(x_min=0, y_min=0, x_max=SIDE, y_max=SIDE))
            for _ in range(count)]


async def timed_segment(stub, request, timeout_s: float) -> tuple[grpc.StatusCode, float, str]:
    start = time.perf_counter()
    try:
        await stub.Segment(request, timeout=timeout_s)
        return grpc.StatusCode.OK, time.perf_counter() - start, ""
    except grpc.aio.AioRpcError as err:
        return err.code(), time.perf_counter() - start, err.details() or ""


@pytest.mark.timeout(300)
async def test_segment_bounds_prompted_work_and_stops_it_when_the_deadline_passes(triton, tmp_path, record):
    data = await asyncio.to_thread(big_jpeg)
    raised_limit = LONG_PROMPTS * SIDE * SIDE
    async with service_process("segmentation", tmp_path, PRELABEL_TRITON_URL=triton.grpc_url,
                               PRELABEL_MAX_MASK_PIXELS=raised_limit) as seg, \
            grpc.aio.insecure_channel(seg.address) as channel:
        stub = segmentation_pb2_grpc.SegmenterStub(channel)
        image = common_pb2.Image(data=data, image_id="big")

        over = segmentation_pb2.SegmentRequest(image=image, prompts=full_image_prompts(MAX_PROMPTS))
        over_code, over_s, over_details = await timed_segment(stub, over, 60)

        one = segmentation_pb2.SegmentRequest(image=image, prompts=full_image_prompts(1))
        cpu_before = seg.cpu_s()
        one_code, one_s, _ = await timed_segment(stub, one, 120)
        one_cpu_s = seg.cpu_s() - cpu_before

        # A deadline that ends the call while it pastes the 2nd or 3rd of 16 masks.
        deadline_s = one_s + 1.0
        long = segmentation_pb2.SegmentRequest(image=image, prompts=full_image_prompts(LONG_PROMPTS))
        short_code, short_s, _ = await timed_segment(stub, long, deadline_s)
        cpu_at_deadline = seg.cpu_s()
        await asyncio.sleep(AFTER_DEADLINE_WATCH_S)
        cpu_after_s = seg.cpu_s() - cpu_at_deadline

    record("prompted_work",
           over_budget_prompts=figure(MAX_PROMPTS, "full-image prompts",
                                      note=f"{SIDE}x{SIDE} JPEG, bound {raised_limit} pixels"),
           over_budget_code=figure(over_code.name),
           over_budget_rejection_s=figure(over_s, "s"),
           one_prompt_call_s=figure(one_s, "s", note="one full-image prompt"),
           one_prompt_cpu_s=figure(one_cpu_s, "CPU-s"),
           short_deadline_s=figure(deadline_s, "s", note=f"{LONG_PROMPTS} full-image prompts"),
           cpu_s_after_deadline=figure(cpu_after_s, "CPU-s", f"< {CPU_AFTER_DEADLINE_LIMIT_S}",
                                       cpu_after_s < CPU_AFTER_DEADLINE_LIMIT_S,
                                       note=f"segmentation process, {AFTER_DEADLINE_WATCH_S:.0f} s after the deadline"))
    assert over_code == grpc.StatusCode.INVALID_ARGUMENT, (over_code, over_details)
    assert "prompt boxes cover" in over_details
    assert one_code == grpc.StatusCode.OK
    assert short_code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert cpu_after_s < CPU_AFTER_DEADLINE_LIMIT_S, f"{cpu_after_s:.2f} CPU-s after the deadline"
