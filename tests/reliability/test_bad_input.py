"""Bad input through the real detection server and a real Triton: every hostile or odd
image gets INVALID_ARGUMENT with a google.rpc.BadRequest field violation on image.data
(or a correct result), never UNKNOWN/INTERNAL, and nothing rejected reaches Triton."""
from __future__ import annotations

import asyncio
import io
import os
import subprocess
import time

import grpc
import numpy as np
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from PIL import Image, ImageFile, WebPImagePlugin

from prelabel.core.errors import InvalidArgument
from prelabel.v1 import common_pb2, detection_pb2, detection_pb2_grpc
from services.common.imaging import decode_image
from services.common.settings import ServiceSettings
from tests.geometry import iou
from tests.photos import with_orientation
from tests.reliability import corpus
from tests.reliability.conftest import (
    descendants,
    detection_app,
    percentile,
    rss_bytes,
    triton_inference_count,
)
from tests.reliability.report import figure

pytestmark = [pytest.mark.integration]

IMAGE_FIELD = "image.data"
DEFAULT_MODEL = "coco_detector"
NEVER = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}
REJECTION_P99_TARGET_MS = 20.0
BOMB_P99_LIMIT_MS = 100.0
BOMB_RSS_LIMIT_BYTES = 50 * 1024 * 1024


def request_for(data: bytes, image_id: str = "", model: str = "") -> detection_pb2.DetectRequest:
    return detection_pb2.DetectRequest(image=common_pb2.Image(data=data, image_id=image_id), model=model)


def field_violations(err: grpc.aio.AioRpcError) -> list[str]:
    """Fields named by the google.rpc.BadRequest detail of a failed call."""
    status = rpc_status.from_call(err)
    if status is None:
        return []
    fields = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields += [v.field for v in bad.field_violations]
    return fields


async def call(stub, request, timeout_s: float = 60.0):
    """(status code, response or error, seconds) of one Detect."""
    start = time.perf_counter()
    try:
        reply = await stub.Detect(request, timeout=timeout_s)
        return grpc.StatusCode.OK, reply, time.perf_counter() - start
    except grpc.aio.AioRpcError as err:
        return err.code(), err, time.perf_counter() - start


BATCH = 8  # coco_detector's max_batch_size: more at once only queues in Triton


async def call_all(stub, requests, timeout_s: float = 120.0):
    """Detects, BATCH at a time (Triton batches them): [(code, response or error, seconds)].
    Bounded so that a loaded runner does not push requests past the service's default
    30 s deadline, which is not what these tests are about."""
    gate = asyncio.Semaphore(BATCH)

    async def one(request):
        async with gate:
            return await call(stub, request, timeout_s)

    return await asyncio.gather(*(one(r) for r in requests))


def rejection_problem(case: str, code, outcome) -> str | None:
    """Why `outcome` is not a proper image.data rejection (None when it is)."""
    if code != grpc.StatusCode.INVALID_ARGUMENT:
        details = outcome.details() if isinstance(outcome, grpc.aio.AioRpcError) else ""
        return f"{case}: {code.name} instead of INVALID_ARGUMENT {details}"
    if IMAGE_FIELD not in field_violations(outcome):
        return f"{case}: no BadRequest violation on {IMAGE_FIELD} ({outcome.details()})"
    return None


# ----------------------------------------------------------- rejected batches
REJECTED_GROUPS = {
    "malformed": corpus.malformed_cases,
    "bombs": lambda: corpus.bomb_cases() + [corpus.Case("png_deflate_bomb_8000x8000", corpus.png_deflate_bomb())],
    "foreign_formats": corpus.foreign_format_cases,
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("group", list(REJECTED_GROUPS))
async def test_detect_rejects_with_bad_request_and_never_calls_triton_when_image_is_hostile(
        group, detector, triton, record):
    cases = REJECTED_GROUPS[group]()
    before = triton_inference_count(triton.grpc_url, DEFAULT_MODEL)
    problems, latencies = [], []
    for case in cases:
        code, outcome, seconds = await call(detector, request_for(case.data, case.name))
        latencies.append(seconds)
        if (problem := rejection_problem(case.name, code, outcome)) is not None:
            problems.append(problem)
    await asyncio.sleep(0.5)  # let any stray inference land in the statistics
    after = triton_inference_count(triton.grpc_url, DEFAULT_MODEL)

    p99_ms = percentile(latencies, 99) * 1000
    record("bad_input", **{
        f"{group}_cases": figure(len(cases), "requests"),
        f"{group}_rejection_p99_ms": figure(p99_ms, "ms", f"< {REJECTION_P99_TARGET_MS:.0f}",
                                           p99_ms < REJECTION_P99_TARGET_MS),
        f"{group}_triton_calls": figure(after - before, "inferences", "0", after == before),
    })
    assert not problems, "\n".join(problems)
    assert after == before, f"Triton ran {after - before} inferences for rejected input"
    # The doc's target is 20 ms; on a shared 2-core runner we bound it loosely and
    # report the measured figure.
    assert p99_ms < 10 * REJECTION_P99_TARGET_MS


@pytest.mark.timeout(180)
async def test_detect_answers_result_or_bad_request_when_valid_files_are_mutated(detector, record):
    problems, outcomes = [], {"OK": 0, "INVALID_ARGUMENT": 0}
    cases = corpus.mutated_cases(32)
    results = await call_all(detector, [request_for(c.data, c.name) for c in cases])
    for case, (code, outcome, _) in zip(cases, results, strict=True):
        if code == grpc.StatusCode.OK:
            outcomes["OK"] += 1
            if not (outcome.image_size.width > 0 and outcome.image_size.height > 0):
                problems.append(f"{case.name}: OK with image size {outcome.image_size}")
        elif (problem := rejection_problem(case.name, code, outcome)) is not None:
            problems.append(problem)
        else:
            outcomes["INVALID_ARGUMENT"] += 1
    record("bad_input", mutated_ok=figure(outcomes["OK"], "requests"),
           mutated_rejected=figure(outcomes["INVALID_ARGUMENT"], "requests"))
    assert not problems, "\n".join(problems)


@pytest.mark.timeout(60)
async def test_detect_answers_invalid_argument_when_request_protobuf_is_malformed(detection_address):
    async with grpc.aio.insecure_channel(detection_address) as channel:
        raw_detect = channel.unary_unary("/prelabel.v1.Detector/Detect")  # bytes in, bytes out
        for raw in (b"\xff\xff\xff", b"\x0a\xff\xff\xff\xff\x0f", b"\x0a\x05\x0a\x03abc\x80"):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await raw_detect(raw, timeout=10)
            assert err.value.code() not in NEVER, err.value.details()
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "<class" not in err.value.details()


# --------------------------------------------------------------- bombs in-process
@pytest.mark.timeout(120)
def test_decode_image_rejects_bombs_fast_without_decoding_when_header_claims_too_many_pixels(
        monkeypatch, record):
    bombs = corpus.bomb_cases() + [corpus.Case("png_deflate_bomb_8000x8000", corpus.png_deflate_bomb())]
    limits = ServiceSettings()
    decode_calls = []

    def spy(original):
        def wrapper(self, *args, **kwargs):
            decode_calls.append(type(self).__name__)
            return original(self, *args, **kwargs)
        return wrapper

    # Spies, not doubles: the real methods still run. Any pixel decoding goes through
    # one of these.
    monkeypatch.setattr(ImageFile.ImageFile, "load", spy(ImageFile.ImageFile.load))
    monkeypatch.setattr(WebPImagePlugin.WebPImageFile, "load", spy(WebPImagePlugin.WebPImageFile.load))

    decode_image(corpus.encode(corpus.sample_photo(), "PNG"), max_bytes=limits.max_image_bytes,
                 max_pixels=limits.max_image_pixels)  # Pillow's plugins are imported lazily once
    assert decode_calls, "the spies must see a normal decode"
    decode_calls.clear()

    rss_before = rss_bytes()
    durations, problems = [], []
    for case in bombs:
        for _ in range(25):
            start = time.perf_counter()
            try:
                decode_image(case.data, max_bytes=limits.max_image_bytes, max_pixels=limits.max_image_pixels)
                problems.append(f"{case.name}: accepted")
            except InvalidArgument as exc:
                if exc.field != IMAGE_FIELD:
                    problems.append(f"{case.name}: violation on {exc.field}")
            durations.append(time.perf_counter() - start)
    rss_growth = rss_bytes() - rss_before
    p99_ms = percentile(durations, 99) * 1000

    record("bombs", rejection_p99_ms=figure(p99_ms, "ms", f"< {BOMB_P99_LIMIT_MS:.0f}", p99_ms < BOMB_P99_LIMIT_MS),
           rss_growth_mb=figure(rss_growth / 2**20, "MB", "< 50", rss_growth < BOMB_RSS_LIMIT_BYTES),
           pixel_decodes=figure(len(decode_calls), "calls", "0", not decode_calls),
           cases=figure(len(bombs), "files", note=", ".join(c.name for c in bombs)))
    assert not problems, problems
    assert not decode_calls, f"pixels were decoded for a bomb: {decode_calls}"
    assert p99_ms < BOMB_P99_LIMIT_MS
    assert rss_growth < BOMB_RSS_LIMIT_BYTES


# --------------------------------------------------------------- format allow-list
@pytest.mark.timeout(60)
async def test_detect_rejects_eps_without_starting_ghostscript_when_eps_is_sent(detector, monkeypatch):
    eps = next(c.data for c in corpus.foreign_format_cases() if c.name == "eps")
    assert Image.open(io.BytesIO(eps)).format == "EPS", "the input must be real EPS"
    spawned = []
    real_popen = subprocess.Popen

    class PopenSpy(real_popen):  # records, then really starts the process
        def __init__(self, args, *a, **kw):
            spawned.append(args)
            super().__init__(args, *a, **kw)

    monkeypatch.setattr(subprocess, "Popen", PopenSpy)
    seen, watching = set(), True

    async def watch_children():
        while watching:
            seen.update(cmd for _, cmd in descendants(os.getpid()))
            await asyncio.sleep(0.002)

    baseline = {cmd for _, cmd in descendants(os.getpid())}
    watcher = asyncio.create_task(watch_children())
    try:
        for _ in range(5):
            code, outcome, _ = await call(detector, request_for(eps, "eps"))
            assert rejection_problem("eps", code, outcome) is None
    finally:
        watching = False
        await watcher
    new_children = seen - baseline
    assert not spawned, f"subprocesses started while decoding EPS: {spawned}"
    # No new process at all (Ghostscript or anything else) appeared under this process.
    # Where gs is not installed the Popen spy is what proves Pillow never tried to run it.
    assert not new_children, new_children


# --------------------------------------------------------------- size limits
SMALL_TRANSPORT_LIMIT = 256 * 1024
SMALL_IMAGE_LIMIT = 64 * 1024


def request_of_size(total: int) -> detection_pb2.DetectRequest:
    """A DetectRequest whose serialized size is exactly `total` bytes."""
    for n in range(total, max(total - 32, 0), -1):
        request = request_for(b"\x00" * n)
        if request.ByteSize() == total:
            return request
    raise AssertionError(f"no request of exactly {total} bytes")


def png_of_size(total: int) -> bytes:
    """A valid PNG of exactly `total` bytes (an ancillary private chunk pads it)."""
    png = corpus.encode(corpus.sample_photo(), "PNG")
    iend = png.rindex(b"IEND") - 4
    pad = total - len(png) - 12  # a chunk adds length + type + crc
    assert pad >= 0
    return png[:iend] + corpus.png_chunk(b"prVt", b"\x00" * pad) + png[iend:]


@pytest.fixture(scope="module")
async def small_limits(triton):
    async with detection_app(triton.grpc_url, grpc_max_receive_bytes=SMALL_TRANSPORT_LIMIT,
                             max_image_bytes=SMALL_IMAGE_LIMIT) as (_, address), \
            grpc.aio.insecure_channel(address) as channel:
        yield detection_pb2_grpc.DetectorStub(channel)


@pytest.mark.timeout(60)
async def test_detect_answers_resource_exhausted_from_grpc_when_message_is_one_byte_over_limit(small_limits):
    at_limit = request_of_size(SMALL_TRANSPORT_LIMIT)
    code, outcome, _ = await call(small_limits, at_limit)
    # Accepted by the transport: the application sees it (and refuses its size).
    assert rejection_problem("at transport limit", code, outcome) is None

    over = request_of_size(SMALL_TRANSPORT_LIMIT + 1)
    code, outcome, _ = await call(small_limits, over)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, code
    assert "larger than max" in outcome.details()


@pytest.mark.timeout(60)
async def test_detect_rejects_with_bad_request_when_image_exceeds_max_image_bytes(small_limits):
    code, reply, _ = await call(small_limits, request_for(png_of_size(SMALL_IMAGE_LIMIT)))
    assert code == grpc.StatusCode.OK, reply
    code, outcome, _ = await call(small_limits, request_for(png_of_size(SMALL_IMAGE_LIMIT + 1)))
    assert rejection_problem("image one byte over max_image_bytes", code, outcome) is None
    assert f"limit is {SMALL_IMAGE_LIMIT}" in outcome.details()


# --------------------------------------------------------------- odd but valid images
DEGENERATE_SIZES = [(1, 1), (2, 1), (1, 10000), (10000, 1), (3, 5000), (5000, 3)]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP", "WEBP"])
async def test_detect_answers_result_or_bad_request_when_size_is_degenerate(detector, fmt):
    problems = []
    sizes = DEGENERATE_SIZES
    requests = [request_for(corpus.encode(Image.new("RGB", size, (120, 60, 30)), fmt)) for size in sizes]
    for (width, height), (code, outcome, _) in zip(sizes, await call_all(detector, requests), strict=True):
        if code == grpc.StatusCode.OK:
            size = (outcome.image_size.width, outcome.image_size.height)
            if size != (width, height):
                problems.append(f"{width}x{height}: image_size {size}")
            for d in outcome.detections:
                b = d.box
                if not (0 <= b.x_min <= b.x_max <= width and 0 <= b.y_min <= b.y_max <= height):
                    problems.append(f"{width}x{height}: box outside the image {b}")
        elif (problem := rejection_problem(f"{width}x{height}", code, outcome)) is not None:
            problems.append(problem)
    assert not problems, "\n".join(problems)


@pytest.mark.timeout(60)
async def test_detect_answers_result_or_bad_request_when_header_claims_zero_size(detector):
    rejected = {"png_0x16": corpus.png_claiming(0, 16), "png_16x0": corpus.png_claiming(16, 0),
                "jpeg_0x16": corpus.jpeg_claiming(0, 16), "bmp_0x16": corpus.bmp_claiming(0, 16)}
    for name, data in rejected.items():
        code, outcome, _ = await call(detector, request_for(data))
        assert rejection_problem(name, code, outcome) is None
    # A GIF's logical screen may be 0 wide: Pillow grows the canvas to the first frame
    # (1x1 here), so a correct result is as good as a rejection.
    code, outcome, _ = await call(detector, request_for(corpus.gif_claiming(0, 16)))
    if code == grpc.StatusCode.OK:
        assert (outcome.image_size.width, outcome.image_size.height) == (1, 16)
    else:
        assert rejection_problem("gif_0x16", code, outcome) is None


@pytest.mark.parametrize("name,data,expected", corpus.colour_mode_cases(),
                         ids=lambda v: v if isinstance(v, str) else "")
def test_decode_image_gives_expected_rgb_when_colour_mode_is(name, data, expected):
    decoded = decode_image(data, max_bytes=1 << 22, max_pixels=1 << 22)
    assert decoded.image.mode == "RGB"
    pixel = np.asarray(decoded.image)[0, 0]
    assert np.abs(pixel.astype(int) - np.array(expected)).max() <= 3, (pixel, expected)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_decode_image_uses_first_frame_when_image_is_animated(fmt):
    decoded = decode_image(corpus.animated(fmt), max_bytes=1 << 22, max_pixels=1 << 22)
    assert np.abs(np.asarray(decoded.image)[15, 20].astype(int) - (255, 0, 0)).max() <= 3


@pytest.mark.timeout(120)
async def test_detect_answers_result_when_colour_mode_or_animation_is_unusual(detector):
    inputs = [(name, data) for name, data, _ in corpus.colour_mode_cases()]
    inputs += [(f"animated_{fmt}", corpus.animated(fmt)) for fmt in ("GIF", "WEBP", "PNG")]
    problems = []
    results = await call_all(detector, [request_for(data, name) for name, data in inputs])
    for (name, _), (code, reply, _) in zip(inputs, results, strict=True):
        if code != grpc.StatusCode.OK:
            problems.append(f"{name}: {code.name} {reply.details()}")
        elif (reply.image_size.width, reply.image_size.height) != (40, 30) or reply.image_id != name:
            problems.append(f"{name}: image_size {reply.image_size} id {reply.image_id!r}")
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------- EXIF orientation


def top_box(reply) -> tuple[float, float, float, float]:
    best = max(reply.detections, key=lambda d: d.score)
    return best.box.x_min, best.box.y_min, best.box.x_max, best.box.y_max


@pytest.mark.timeout(150)
async def test_detect_boxes_match_upright_reference_when_exif_orientation_is_any_of_eight(detector, record):
    from tests.photos import photo

    upright = photo("astronaut.png").convert("RGB").crop((0, 0, 512, 384))  # not square: axes matter
    face = dict(model="face_detector")
    code, reference, _ = await call(detector, request_for(corpus.encode(upright, "PNG"), **face))
    assert code == grpc.StatusCode.OK and reference.detections, "the upright photo has a face"
    ref_box = top_box(reference)

    ious, problems = {}, []
    variants = [(f"{fmt}_{o}", with_orientation(upright, o, fmt), min_iou)
                for fmt, min_iou in (("PNG", 0.99), ("JPEG", 0.9))
                for o in range(1, 9)]
    results = await call_all(detector, [request_for(data, **face) for _, data, _ in variants])
    for (key, _, min_iou), (code, reply, _) in zip(variants, results, strict=True):
        if code != grpc.StatusCode.OK:
            problems.append(f"{key}: {code.name}")
            continue
        if (reply.image_size.width, reply.image_size.height) != upright.size:
            problems.append(f"{key}: image_size {reply.image_size.width}x{reply.image_size.height}")
        ious[key] = iou(top_box(reply), ref_box) if reply.detections else 0.0
        if ious[key] < min_iou:
            problems.append(f"{key}: IoU {ious[key]:.3f} < {min_iou}")
    png_min = min((v for k, v in ious.items() if k.startswith("PNG")), default=0.0)
    jpeg_min = min((v for k, v in ious.items() if k.startswith("JPEG")), default=0.0)
    record("orientation", min_iou_png=figure(png_min, "IoU", ">= 0.99", png_min >= 0.99),
           min_iou_jpeg=figure(jpeg_min, "IoU", note="re-encoded rotated JPEG: codec noise"))
    assert not problems, "\n".join(problems)
