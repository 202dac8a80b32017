"""Detection end to end: real tritonserver, real detection gRPC server, real photos."""
from __future__ import annotations

import os
import subprocess
import sys

import grpc
import pytest
from PIL import Image

from prelabel.core.errors import Unavailable
from prelabel.core.models.store import read_lock
from prelabel.v1 import common_pb2, detection_pb2
from services.common.metrics import Metrics
from services.common.startup import RandomWeightsRefused, warm_up
from services.common.task import run_task
from services.common.triton_client import TritonClient
from services.detection.head import DetectHead
from services.detection.settings import DetectionSettings
from services.embedded_triton.launcher import free_port
from tests.geometry import iou
from tests.gpu_profile import gpu_profile_repository, random_weights_triton
from tests.grpc_helpers import bad_request_field, concurrent_counts
from tests.photos import encode, photo, photo_bytes, with_orientation

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

FACE = "face_detector"



def as_tuple(box) -> tuple[float, float, float, float]:
    return (box.x_min, box.y_min, box.x_max, box.y_max)


async def best_face(detector, data: bytes) -> tuple:
    reply = await detector.Detect(
        detection_pb2.DetectRequest(image=common_pb2.Image(data=data), model=FACE, score_threshold=0.9),
        timeout=60)
    assert reply.detections, "no face found"
    return as_tuple(reply.detections[0].box), reply


async def test_detect_returns_face_at_its_place_with_pretrained_provenance_when_real_photo(detector):
    box, reply = await best_face(detector, photo_bytes("astronaut.png"))
    # Eileen Collins' face in skimage's astronaut.png lies around x 180-270, y 60-175.
    assert iou(box, (180, 60, 270, 175)) > 0.7, box
    det = reply.detections[0]
    assert det.category.name == "face" and det.score > 0.99
    for prov in (det.provenance, reply.provenance):
        assert prov.weights == common_pb2.WEIGHTS_PRETRAINED
        assert prov.model_name == FACE and prov.model_version == "1"
        assert "facenet-pytorch" in prov.weights_source
    assert (reply.image_size.width, reply.image_size.height) == (512, 512)



async def test_detect_finds_same_face_when_photo_rescaled_padded_grey_or_exif_rotated(detector):
    upright = photo("astronaut.png").convert("RGB")
    reference, _ = await best_face(detector, encode(upright, "PNG"))

    variants: dict[str, tuple[bytes, callable]] = {}
    for factor in (0.6, 1.8):
        size = (round(upright.width * factor), round(upright.height * factor))
        variants[f"scale {factor}"] = (
            encode(upright.resize(size, Image.BICUBIC), "PNG"),
            lambda b, f=factor: tuple(v / f for v in b),
        )
    canvas = Image.new("RGB", (900, 640), (0, 0, 0))
    canvas.paste(upright, (300, 100))
    variants["padded"] = (encode(canvas, "PNG"), lambda b: (b[0] - 300, b[1] - 100, b[2] - 300, b[3] - 100))
    variants["greyscale"] = (encode(upright.convert("L"), "PNG"), lambda b: b)
    for orientation in range(1, 9):
        variants[f"exif {orientation}"] = (with_orientation(upright, orientation), lambda b: b)

    for name, (data, to_reference_frame) in variants.items():
        box, _ = await best_face(detector, data)
        overlap = iou(to_reference_frame(box), reference)
        assert overlap >= 0.9, f"{name}: IoU {overlap:.3f} ({box} vs {reference})"


# Hand-checked on the photos: where the main object is, in source pixels.
@pytest.mark.parametrize("name,category,where", [
    ("astronaut.png", "person", (10, 10, 365, 512)),
    ("coffee.png", "cup", (165, 15, 420, 255)),
    ("motorcycle_left.png", "motorcycle", (95, 80, 690, 455)),
])
async def test_detect_finds_real_coco_objects_with_pretrained_provenance_when_real_photos(
        detector, name, category, where):
    # Small CPU models score low (NanoDet's cup: ~0.27, under the default reject band):
    # ask for every draft so this checks the model, not the review policy.
    reply = await detector.Detect(detection_pb2.DetectRequest(
        image=common_pb2.Image(data=photo_bytes(name)), score_threshold=0.1,
        review_policy=common_pb2.ReviewPolicy(include_rejected=True)), timeout=60)
    found = [d for d in reply.detections if d.category.name == category]
    assert found, [(d.category.name, round(d.score, 2)) for d in reply.detections]
    assert iou(as_tuple(found[0].box), where) > 0.6, found[0].box
    locked = read_lock()["converted"]["nanodet"]
    for prov in (reply.provenance, found[0].provenance):
        assert prov.weights == common_pb2.WEIGHTS_PRETRAINED
        assert prov.model_name == "coco_detector"
        assert prov.weights_source == locked["source"]
        assert prov.weights_sha256 == locked["onnx_sha256"]
        assert "Apache-2.0" in prov.license


@pytest.fixture(scope="module")
def random_triton(tmp_path_factory):
    """A second real tritonserver whose only model has RANDOM weights (allowed for this
    server alone, no real weights to find): the GPU profile's coco_detector on CPU
    (tests/gpu_profile.py). The default profiles never serve random weights; this is how
    the refusal is tested."""
    work = tmp_path_factory.mktemp("random-triton")
    with random_weights_triton(gpu_profile_repository(work / "model_repository", ["coco_detector"]), work) as server:
        yield server


async def test_detect_applies_threshold_class_filter_and_max_when_requested(detector):
    base = detection_pb2.DetectRequest(image=common_pb2.Image(data=photo_bytes("coffee.png")),
                                       score_threshold=0.0,
                                       review_policy=common_pb2.ReviewPolicy(include_rejected=True))
    everything = await detector.Detect(base, timeout=60)
    assert len(everything.detections) > 3, "NanoDet keeps candidates down to its 0.05 floor"
    scores = [d.score for d in everything.detections]
    assert scores == sorted(scores, reverse=True)
    for d in everything.detections:
        assert 0 <= d.box.x_min <= d.box.x_max <= everything.image_size.width
        assert 0 <= d.box.y_min <= d.box.y_max <= everything.image_size.height

    capped = detection_pb2.DetectRequest()
    capped.CopyFrom(base)
    capped.max_detections = 2
    assert len((await detector.Detect(capped, timeout=60)).detections) == 2

    wanted = everything.detections[0].category
    filtered = detection_pb2.DetectRequest()
    filtered.CopyFrom(base)
    filtered.category_names.append(wanted.name)
    got = (await detector.Detect(filtered, timeout=60)).detections
    assert got and all(d.category.name == wanted.name for d in got)

    threshold = detection_pb2.DetectRequest()
    threshold.CopyFrom(base)
    # Both sides of the scores the model gave: the lowest keeps some, above the top keeps none.
    threshold.score_threshold = scores[-1]
    got = (await detector.Detect(threshold, timeout=60)).detections
    assert got and all(d.score >= threshold.score_threshold for d in got)
    threshold.score_threshold = min(1.0, scores[0] + 1e-3)
    assert not (await detector.Detect(threshold, timeout=60)).detections


async def test_detect_batches_in_triton_when_16_concurrent_requests(detector, triton):
    request = detection_pb2.DetectRequest(image=common_pb2.Image(data=photo_bytes("chelsea.png")))
    replies, inferences, executions = await concurrent_counts(
        triton.grpc_url, "coco_detector", detector.Detect, [request] * 16, 120)
    assert len(replies) == 16
    assert inferences == 16
    assert executions < inferences, f"no batching: {executions} executions for {inferences} inferences"


@pytest.mark.parametrize("data", [
    b"",
    b"\x89PNG\r\n\x1a\n garbage",
    b"this is plain text, not an image",
    encode(Image.new("RGB", (64, 64)), "JPEG")[:200],
])
async def test_detect_returns_invalid_argument_with_field_when_image_corrupt(detector, data):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await detector.Detect(detection_pb2.DetectRequest(image=common_pb2.Image(data=data)), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_field(err.value) == "image.data"


async def test_detect_returns_invalid_argument_when_image_oversized(detector):
    # 7000x6000 = 42 MP from a small PNG: rejected from the header (cap 36 MP).
    data = encode(Image.new("1", (7000, 6000)), "PNG")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await detector.Detect(detection_pb2.DetectRequest(image=common_pb2.Image(data=data)), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "pixels" in err.value.details()


@pytest.mark.parametrize("request_kw,field", [
    ({"model": "no_such_model"}, "model"),
    ({"score_threshold": 1.5}, "score_threshold"),
    ({"max_detections": 100000}, "max_detections"),
    ({"review_policy": common_pb2.ReviewPolicy(default_band=common_pb2.ReviewBand(accept_at=2))},
     "review_policy.default_band.accept_at"),
])
async def test_detect_returns_invalid_argument_naming_field_when_parameter_bad(detector, request_kw, field):
    request = detection_pb2.DetectRequest(image=common_pb2.Image(data=photo_bytes("coffee.png")), **request_kw)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await detector.Detect(request, timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_field(err.value) == field


async def test_detect_raises_unavailable_when_triton_not_listening():
    dead = TritonClient(f"127.0.0.1:{free_port()}")
    try:
        with pytest.raises(Unavailable):
            await run_task(
                DetectHead(DetectionSettings()),
                detection_pb2.DetectRequest(image=common_pb2.Image(data=photo_bytes("coffee.png"))),
                triton=dead, metrics=Metrics("t"), timeout_s=5)
    finally:
        await dead.close()


async def test_warm_up_refuses_random_weights_when_pretrained_required(triton, random_triton):
    client = TritonClient(random_triton.grpc_url)
    try:
        with pytest.raises(RandomWeightsRefused, match="coco_detector"):
            await warm_up(client, ["coco_detector"], require_pretrained=True)
        provenance = await warm_up(client, ["coco_detector"], require_pretrained=False)
        assert provenance["coco_detector"].weights == common_pb2.WEIGHTS_RANDOM
    finally:
        await client.close()
    real = TritonClient(triton.grpc_url)
    try:
        provenance = await warm_up(real, ["face_detector", "coco_detector"], require_pretrained=True)
        assert {p.weights for p in provenance.values()} == {common_pb2.WEIGHTS_PRETRAINED}
    finally:
        await real.close()


def test_detection_process_exits_nonzero_when_pretrained_required_and_weights_random(random_triton):
    env = dict(os.environ, PRELABEL_TRITON_URL=random_triton.grpc_url, PRELABEL_GRPC_PORT="0",
               PRELABEL_MODELS='["coco_detector"]', PRELABEL_DEFAULT_MODEL="coco_detector",
               PRELABEL_METRICS_PORT="", PRELABEL_REQUIRE_PRETRAINED="true")
    env.pop("PRELABEL_METRICS_PORT")
    proc = subprocess.run([sys.executable, "-m", "services.detection"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "RANDOM weights" in proc.stderr
