"""A model service's memory under images at the caps, as a real process: eight concurrent
6000x6000 PNGs (36 MP, the pixel cap; ~120 KB each on the wire) keep the detection
process's peak RSS under its pod's memory limit (k8s/base/detection.yaml, read here, with
the glibc settings the manifests give every pod), and the memory goes back after the burst."""
from __future__ import annotations

import asyncio
import time

import grpc
import numpy as np
import pytest
import yaml
from PIL import Image

from prelabel.core.limits import MAX_IMAGE_BYTES
from prelabel.v1 import common_pb2, detection_pb2, detection_pb2_grpc, segmentation_pb2, segmentation_pb2_grpc
from tests.conftest import REPO_ROOT
from tests.reliability import corpus
from tests.reliability.conftest import detection_process, service_process
from tests.reliability.report import figure
from tests.reliability.test_payload_abuse import peak_rss_bytes
from tests.reliability.test_router_memory import pod_memory_limit_bytes
from tests.waiting import until

pytestmark = [pytest.mark.integration]

CONCURRENT = 8
SIDE = 6000  # 36 MP: ServiceSettings.max_image_pixels
SETTLE_S = 2.0


def manifest_malloc_env() -> dict[str, str]:
    """The MALLOC_* settings of the pods' common ConfigMap (k8s/base/kustomization.yaml)."""
    kustomization = yaml.safe_load((REPO_ROOT / "k8s" / "base" / "kustomization.yaml").read_text())
    common = next(c for c in kustomization["configMapGenerator"] if c["name"] == "prelabel-common")
    pairs = (literal.split("=", 1) for literal in common["literals"])
    return {k: v for k, v in pairs if k.startswith("MALLOC_")}


@pytest.mark.timeout(300)
async def test_detection_process_stays_under_its_pod_limit_when_8_images_at_the_pixel_cap_arrive_at_once(
        triton, tmp_path, record):
    limit = pod_memory_limit_bytes("detection.yaml", "detection")
    data = corpus.encode(Image.new("RGB", (SIDE, SIDE), (90, 140, 200)), "PNG")
    request = detection_pb2.DetectRequest(image=common_pb2.Image(data=data, image_id="cap"), model="coco_detector")
    async with detection_process(triton.grpc_url, tmp_path, PRELABEL_MODELS='["coco_detector"]',
                                 PRELABEL_DEFAULT_MODEL="coco_detector", **manifest_malloc_env()) as proc, \
            grpc.aio.insecure_channel(proc.address) as channel:
        stub = detection_pb2_grpc.DetectorStub(channel)
        await stub.Detect(request, timeout=120)  # warm: the first decode's allocations
        before = proc.rss_bytes()
        start = time.perf_counter()
        replies = await asyncio.gather(*(stub.Detect(request, timeout=240) for _ in range(CONCURRENT)))
        burst_s = time.perf_counter() - start
        peak = peak_rss_bytes(proc.process.pid)
        await asyncio.sleep(SETTLE_S)
        after = proc.rss_bytes()
    record("service_memory",
           images_at_pixel_cap=figure(CONCURRENT, "concurrent", note=f"{SIDE}x{SIDE} PNG, {len(data) >> 10} KB"),
           burst_s=figure(burst_s, "s"),
           detection_peak_rss_mb=figure(peak / 2**20, "MB", f"< pod limit {limit >> 20} MiB / 2", peak < limit / 2),
           detection_rss_after_burst_mb=figure(after / 2**20, "MB", "< idle + 256",
                                               after < before + 256 * 2**20, note=f"{before / 2**20:.0f} MB idle"))
    assert all(r.image_size.width == SIDE for r in replies)
    assert peak < limit / 2, f"peak RSS {peak / 2**20:.0f} MB (pod limit {limit >> 20} MiB)"
    assert after < before + 256 * 2**20, f"RSS {after / 2**20:.0f} MB after the burst ({before / 2**20:.0f} before)"


IN_FLIGHT = 64  # ServiceSettings.max_in_flight


def noise_jpeg_near_the_byte_cap() -> bytes:
    """A valid JPEG just under max_image_bytes (20 MiB) and far under the pixel cap: noise
    at quality 100 (~1.9 bytes a pixel), the largest encoded image a service accepts."""
    rng = np.random.default_rng(21)
    data = corpus.encode(Image.fromarray(rng.integers(0, 256, (2800, 3700, 3), dtype=np.uint8)), "JPEG", quality=100)
    assert 19 * 2**20 < len(data) < MAX_IMAGE_BYTES, len(data)
    return data


@pytest.mark.timeout(300)
async def test_detection_process_stays_under_its_pod_limit_when_64_images_at_the_byte_cap_arrive_at_once(
        triton, tmp_path, record):
    """Every admission slot (64) filled with a 20 MB image at once: the caps multiplied. Each
    request is received (gRPC's buffer, Python's copy, the parse: ~47 MB at its peak) and
    then held while it waits for the decode budget."""
    limit = pod_memory_limit_bytes("detection.yaml", "detection")
    data = noise_jpeg_near_the_byte_cap()
    request = detection_pb2.DetectRequest(image=common_pb2.Image(data=data, image_id="bytes"), model="coco_detector")
    async with detection_process(triton.grpc_url, tmp_path, PRELABEL_MODELS='["coco_detector"]',
                                 PRELABEL_DEFAULT_MODEL="coco_detector", **manifest_malloc_env()) as proc, \
            grpc.aio.insecure_channel(proc.address, options=[("grpc.max_send_message_length", 64 * 2**20)]) as channel:
        stub = detection_pb2_grpc.DetectorStub(channel)
        await stub.Detect(request, timeout=120)  # warm
        before = proc.rss_bytes()
        results = await asyncio.gather(*(code_of(stub.Detect(request, timeout=240)) for _ in range(IN_FLIGHT)))
        peak = peak_rss_bytes(proc.process.pid)
    answered = results.count(grpc.StatusCode.OK)
    record("service_memory", images_at_byte_cap_peak_rss_mb=figure(
        peak / 2**20, "MB", f"< pod limit {limit >> 20} MiB", peak < limit,
        note=f"{IN_FLIGHT} concurrent {len(data) / 2**20:.1f} MiB JPEGs; {answered} answered, the rest "
             f"RESOURCE_EXHAUSTED with a retry hint; {before / 2**20:.0f} MB before"))
    assert answered >= 1 and set(results) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, results
    assert peak < limit, f"peak RSS {peak / 2**20:.0f} MB (pod limit {limit >> 20} MiB)"


async def code_of(call) -> grpc.StatusCode:
    try:
        await call
        return grpc.StatusCode.OK
    except grpc.aio.AioRpcError as err:
        return err.code()


SESSIONS = 32  # SegmentationSettings.click_max_sessions


@pytest.mark.timeout(300)
async def test_segmentation_process_stays_under_its_pod_limit_when_every_click_session_opens_with_a_20mb_image(
        triton, tmp_path, record):
    """Every session the process serves (32), each opening with an image at the byte cap
    and then idle, as an annotator between clicks: a start's image is held in the process's
    image-bytes budget while it is prepared (beyond it: RESOURCE_EXHAUSTED with a retry
    hint), and the session keeps the prepared state, not the bytes."""
    limit = pod_memory_limit_bytes("segmentation.yaml", "segmentation")
    start = segmentation_pb2.ClickSessionRequest(start=segmentation_pb2.ClickSessionStart(
        image=common_pb2.Image(data=noise_jpeg_near_the_byte_cap(), image_id="bytes")))
    click = segmentation_pb2.ClickSessionRequest(click=segmentation_pb2.ClickPrompt(
        points=[segmentation_pb2.PointPrompt(x=100, y=100, label=segmentation_pb2.POINT_LABEL_POSITIVE)]))
    release = asyncio.Event()
    answered = 0

    async def session(stub) -> grpc.StatusCode:
        nonlocal answered

        async def messages():
            yield start
            yield click
            await release.wait()
        try:
            async for _ in stub.ClickSession(messages(), timeout=240):
                answered += 1
            return grpc.StatusCode.OK
        except grpc.aio.AioRpcError as err:
            return err.code()

    async with service_process("segmentation", tmp_path, PRELABEL_TRITON_URL=triton.grpc_url,
                               **manifest_malloc_env()) as proc, \
            grpc.aio.insecure_channel(proc.address, options=[("grpc.max_send_message_length", 64 * 2**20)]) as channel:
        stub = segmentation_pb2_grpc.SegmenterStub(channel)
        before = peak_rss_bytes(proc.process.pid)
        sessions = [asyncio.ensure_future(session(stub)) for _ in range(SESSIONS)]
        await until(lambda: answered + sum(s.done() for s in sessions) >= SESSIONS, timeout_s=180)
        await asyncio.sleep(1.0)  # every session idle now, holding what it holds
        peak = peak_rss_bytes(proc.process.pid)
        idle = proc.rss_bytes()
        release.set()
        codes = await asyncio.gather(*sessions)
    record("service_memory", click_sessions_at_byte_cap_peak_rss_mb=figure(
        peak / 2**20, "MB", f"< pod limit {limit >> 20} MiB", peak < limit,
        note=f"segmentation process, {SESSIONS} ClickSessions each opening with a 19.6 MiB JPEG and one click; "
             f"{answered} answered, the rest RESOURCE_EXHAUSTED with a retry hint; {before / 2**20:.0f} MB before"),
        click_sessions_idle_rss_mb=figure(idle / 2**20, "MB", note="the answered sessions open and idle"))
    assert answered >= 1 and set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, codes
    assert codes.count(grpc.StatusCode.OK) == answered, codes  # each open session answered its click
    assert peak < limit, f"peak RSS {peak / 2**20:.0f} MB (pod limit {limit >> 20} MiB)"
