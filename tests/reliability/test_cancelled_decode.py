"""Cancelling a call stops its image decoding, against the detection service as a real
process: two 36 MP PNGs whose calls end at their deadline (150 ms) cost a fraction of the CPU
that decoding them to the end costs (a worker thread cannot be interrupted, so the decode
reads the image in blocks and stops at the next one)."""
from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest
from PIL import Image

from prelabel.v1 import common_pb2, detection_pb2, detection_pb2_grpc
from tests.reliability import corpus
from tests.reliability.conftest import detection_process
from tests.reliability.report import figure

pytestmark = [pytest.mark.integration]

SIDE = 6000  # 36 MP: the pixel cap
CALLS = 2
DEADLINE_S = 0.15  # well under one decode (~0.4 CPU-s here), on a faster machine too
SETTLE_S = 4.0


def gradient_png() -> bytes:
    """36 MP that compress to a few MB but take a full inflate and unfilter to decode."""
    row = np.linspace(0, 255, SIDE, dtype=np.uint8)
    pixels = np.stack([np.tile(row, (SIDE, 1)), np.tile(row[:, None], (1, SIDE)),
                       np.full((SIDE, SIDE), 128, np.uint8)], axis=-1)
    return corpus.encode(Image.fromarray(pixels), "PNG")


async def cpu_of_calls(proc, stub, request, timeout_s: float) -> tuple[float, list[grpc.StatusCode]]:
    """CPU seconds the process spends on CALLS concurrent calls, until it is idle again."""
    start = proc.cpu_s()

    async def call():
        try:
            await stub.Detect(request, timeout=timeout_s)
            return grpc.StatusCode.OK
        except grpc.aio.AioRpcError as err:
            return err.code()
    codes = await asyncio.gather(*(call() for _ in range(CALLS)))
    await asyncio.sleep(SETTLE_S)  # a decode that was not stopped runs on meanwhile
    return proc.cpu_s() - start, codes


@pytest.mark.timeout(300)
async def test_detection_process_stops_decoding_when_calls_are_cancelled_at_their_deadline(
        triton, tmp_path, record):
    data = gradient_png()
    request = detection_pb2.DetectRequest(image=common_pb2.Image(data=data, image_id="big"), model="coco_detector")
    async with detection_process(triton.grpc_url, tmp_path, PRELABEL_MODELS='["coco_detector"]',
                                 PRELABEL_DEFAULT_MODEL="coco_detector") as proc, \
            grpc.aio.insecure_channel(proc.address) as channel:
        stub = detection_pb2_grpc.DetectorStub(channel)
        await stub.Detect(request, timeout=120)  # warm
        full_cpu, full_codes = await cpu_of_calls(proc, stub, request, 120)
        cancelled_cpu, cancelled_codes = await cpu_of_calls(proc, stub, request, DEADLINE_S)
    record("cancelled_decode", full_decode_cpu_s=figure(full_cpu, "CPU-s", note=f"{CALLS} x {SIDE}x{SIDE} PNG"),
           cancelled_decode_cpu_s=figure(cancelled_cpu, "CPU-s", "< half of full", cancelled_cpu < full_cpu / 2,
                                         note=f"deadline {DEADLINE_S * 1000:.0f} ms"))
    assert full_codes == [grpc.StatusCode.OK] * CALLS
    assert cancelled_codes == [grpc.StatusCode.DEADLINE_EXCEEDED] * CALLS
    assert cancelled_cpu < full_cpu / 2, (cancelled_cpu, full_cpu)
