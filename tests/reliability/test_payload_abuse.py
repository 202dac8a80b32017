"""Compressed and oversized payloads against the router as a real process: concurrent
gzip bombs (30 MB of zeros, ~30 KB on the wire) and images over the image cap must be
refused before they are decompressed, buffered whole or fanned out; the router's peak
memory (VmHWM) must barely move."""
from __future__ import annotations

import asyncio
import os
import time

import grpc
import pytest

from prelabel.v1 import common_pb2, prelabel_pb2, prelabel_pb2_grpc
from services.common.settings import ServiceSettings
from tests.reliability.conftest import percentile, service_process
from tests.reliability.report import figure

pytestmark = [pytest.mark.integration]

BOMB_BYTES = 30 * 1024 * 1024
GZIP_CALLS = 16  # each costs the *client* 30 MB while it compresses
OVERSIZE_CALLS = 8
PEAK_GROWTH_LIMIT_BYTES = 50 * 1024 * 1024  # docs/reliability.md, bombs: RSS growth < 50 MB


def peak_rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


async def timed_call(stub, request, **kw) -> tuple[grpc.StatusCode, float, str]:
    start = time.perf_counter()
    try:
        await stub.PreLabel(request, timeout=30, **kw)
        return grpc.StatusCode.OK, time.perf_counter() - start, ""
    except grpc.aio.AioRpcError as err:
        return err.code(), time.perf_counter() - start, err.details() or ""


@pytest.mark.timeout(240)
async def test_router_refuses_gzip_bombs_and_oversize_images_without_growing_when_sent_concurrently(
        detection_address, segmentation_address, keypoints_address, tmp_path, record):
    limit = ServiceSettings().receive_limit_bytes
    oversize = common_pb2.Image(data=os.urandom(limit + 1024), image_id="oversize")
    bomb = common_pb2.Image(data=bytes(BOMB_BYTES), image_id="bomb")
    async with service_process("router", tmp_path, PRELABEL_DETECTION_ADDR=detection_address,
                               PRELABEL_SEGMENTATION_ADDR=segmentation_address,
                               PRELABEL_KEYPOINTS_ADDR=keypoints_address) as router, \
            grpc.aio.insecure_channel(router.address, options=[
                ("grpc.max_send_message_length", 64 * 1024 * 1024)]) as channel:
        stub = prelabel_pb2_grpc.PreLabelerStub(channel)
        pid = router.process.pid
        before = peak_rss_bytes(pid)
        gzip = await asyncio.gather(*(timed_call(stub, prelabel_pb2.PreLabelRequest(image=bomb),
                                                 compression=grpc.Compression.Gzip)
                                      for _ in range(GZIP_CALLS)))
        big = await asyncio.gather(*(timed_call(stub, prelabel_pb2.PreLabelRequest(image=oversize))
                                     for _ in range(OVERSIZE_CALLS)))
        growth = peak_rss_bytes(pid) - before

    gzip_codes = sorted({c.name for c, _, _ in gzip})
    big_codes = sorted({c.name for c, _, _ in big})
    record("payload_abuse",
           gzip_bombs=figure(GZIP_CALLS, "concurrent calls", note=f"{BOMB_BYTES >> 20} MB of zeros each"),
           gzip_bomb_codes=figure(", ".join(gzip_codes)),
           oversize_images=figure(OVERSIZE_CALLS, "concurrent calls", note=f"receive limit + 1 KB ({limit} B)"),
           oversize_codes=figure(", ".join(big_codes)),
           rejection_p99_ms=figure(percentile([s for _, s, _ in gzip + big], 99) * 1000, "ms",
                                   note="client-side time, includes the client's own gzip"),
           router_peak_rss_growth_mb=figure(growth / 2**20, "MB", "< 50", growth < PEAK_GROWTH_LIMIT_BYTES))
    assert gzip_codes == ["UNIMPLEMENTED"], gzip
    assert big_codes == ["RESOURCE_EXHAUSTED"], big
    assert growth < PEAK_GROWTH_LIMIT_BYTES, f"router peak RSS grew {growth / 2**20:.0f} MB"
