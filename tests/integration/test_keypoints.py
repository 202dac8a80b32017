"""Keypoint service against the real embedded tritonserver: MTCNN facial landmarks
(real weights) on real photos and every EXIF orientation, COCO person keypoints
(keypointer, CPU profile: MoveNet multipose, real weights) automatic and box-prompted, bad requests,
batching under concurrent load, one decode for a person and a face request of one image."""
from __future__ import annotations

import asyncio
import io
from pathlib import Path

import facenet_pytorch
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageOps

from prelabel.core.labels import COCO_KEYPOINT_NAMES
from prelabel.v1 import common_pb2, keypoints_pb2
from services.common.metrics import Metrics
from services.common.triton_client import ModelSpec
from services.keypoints.app import build_app
from services.keypoints.settings import KeypointSettings
from services.modelkit.face_detector import mtcnn_weights_sha256
from tests.conftest import running, stub
from tests.grpc_helpers import concurrent_counts, invalid_argument_field
from tests.photos import STORE_AS, encode, photo, photo_bytes, with_orientation
from tests.unit.triton_models import config_json

pytestmark = pytest.mark.integration

RPC_TIMEOUT_S = 60
FACE = keypoints_pb2.KEYPOINT_KIND_FACE
PERSON = keypoints_pb2.KEYPOINT_KIND_PERSON



def landmarks(instance: keypoints_pb2.KeypointInstance) -> dict[str, tuple[float, float]]:
    return {k.name: (k.x, k.y) for k in instance.keypoints}





def drawn_people(width: int, height: int) -> bytes:
    image = Image.new("RGB", (width, height), (200, 200, 190))
    draw = ImageDraw.Draw(image)
    for cx in (0.3, 0.7):
        x, w, h = width * cx, width * 0.08, height
        draw.ellipse((x - w / 2, h * 0.1, x + w / 2, h * 0.25), fill=(230, 180, 150))
        draw.rectangle((x - w, h * 0.25, x + w, h * 0.6), fill=(40, 60, 160))
        draw.rectangle((x - w * 0.8, h * 0.6, x + w * 0.8, h * 0.95), fill=(50, 50, 50))
    return encode(image, "PNG")


def box(x0, y0, x1, y1) -> common_pb2.Box:
    return common_pb2.Box(x_min=x0, y_min=y0, x_max=x1, y_max=y1)


@pytest.mark.parametrize("name", ["astronaut.png", "camera.png"])
async def test_face_landmarks_fall_inside_the_face_in_a_plausible_layout_when_photos_are_real(
        keypoint_detector, name):
    reply = await keypoint_detector.DetectKeypoints(keypoints_pb2.KeypointRequest(
        image=common_pb2.Image(data=photo_bytes(name), image_id=name), kind=FACE), timeout=RPC_TIMEOUT_S)

    assert reply.schema.name == "face_5"
    assert list(reply.schema.keypoint_names) == ["left_eye", "right_eye", "nose", "mouth_left", "mouth_right"]
    assert reply.provenance.model_name == "face_detector"
    assert reply.provenance.weights == common_pb2.WEIGHTS_PRETRAINED
    # Every label says which weights made it: the stage files inside the installed wheel.
    digest = mtcnn_weights_sha256(Path(facenet_pytorch.__file__).parent / "data")
    assert reply.provenance.weights_sha256 == digest
    assert reply.provenance.weights_source.endswith(f"sha256:{digest[:12]}")
    assert "MIT" in reply.provenance.license
    assert len(reply.instances) == 1
    face = reply.instances[0]
    assert face.detection.category.name == "face" and face.detection.score > 0.99
    b = face.detection.box
    points = landmarks(face)
    for x, y in points.values():
        assert b.x_min <= x <= b.x_max and b.y_min <= y <= b.y_max
    assert all(k.visibility == 2 for k in face.keypoints)
    (lex, ley), (rex, rey), (_, ny) = points["left_eye"], points["right_eye"], points["nose"]
    (mlx, mly), (mrx, mry) = points["mouth_left"], points["mouth_right"]
    # Eyes above the nose above the mouth corners; "left" is image-left (MTCNN).
    assert max(ley, rey) < ny < min(mly, mry)
    assert lex < rex and mlx < mrx


async def test_face_landmarks_are_the_same_when_the_photo_is_stored_with_any_exif_orientation(
        keypoint_detector):
    upright = photo("astronaut.png").convert("RGB").crop((0, 0, 400, 512))  # non-square
    for orientation in STORE_AS:  # the helper really stores what a viewer shows upright
        shown = ImageOps.exif_transpose(Image.open(io.BytesIO(with_orientation(upright, orientation, "PNG"))))
        assert np.array_equal(np.asarray(shown.convert("RGB")), np.asarray(upright)), orientation

    replies = await asyncio.gather(*(
        keypoint_detector.DetectKeypoints(keypoints_pb2.KeypointRequest(
            image=common_pb2.Image(data=with_orientation(upright, orientation)), kind=FACE),
            timeout=RPC_TIMEOUT_S)
        for orientation in STORE_AS))
    results = {}
    for orientation, reply in zip(STORE_AS, replies, strict=False):
        assert (reply.image_size.width, reply.image_size.height) == (400, 512)
        assert len(reply.instances) == 1, orientation
        face = reply.instances[0]
        b = face.detection.box
        results[orientation] = np.array([[b.x_min, b.y_min], [b.x_max, b.y_max], *landmarks(face).values()])
    reference = results[1]
    for orientation, points in results.items():
        assert np.abs(points - reference).max() <= 3.0, (orientation, points - reference)


@pytest.mark.parametrize(("width", "height"), [(640, 200), (200, 640)])
async def test_person_keypoints_stay_inside_their_prompt_box_when_boxes_are_prompted(
        keypoint_detector, width, height):
    prompts = [box(0, 0, width * 0.5, height), box(width * 0.5, height * 0.2, width, height),
               box(-20, -20, width * 0.2, height * 0.2)]
    reply = await keypoint_detector.DetectKeypoints(keypoints_pb2.KeypointRequest(
        image=common_pb2.Image(data=drawn_people(width, height)), prompt_boxes=prompts,
        labeled_threshold=0.0, visible_threshold=0.5), timeout=RPC_TIMEOUT_S)

    assert [i.prompt_index for i in reply.instances] == [0, 1, 2]
    assert list(reply.schema.keypoint_names) == COCO_KEYPOINT_NAMES
    for prompt, instance in zip(prompts, reply.instances, strict=False):
        b = instance.detection.box
        assert (b.x_min, b.y_min, b.x_max, b.y_max) == pytest.approx(
            (max(0, prompt.x_min), max(0, prompt.y_min), min(width, prompt.x_max), min(height, prompt.y_max)))
        assert instance.detection.category.id == 1 and instance.detection.category.name == "person"
        assert 0 <= instance.detection.score <= 1
        assert [k.name for k in instance.keypoints] == COCO_KEYPOINT_NAMES
        for k in instance.keypoints:
            assert k.visibility in (1, 2)  # labeled_threshold 0: every point is labeled
            # Half a source pixel of slack (letterbox rounding).
            slack_x = slack_y = 0.5
            assert b.x_min - slack_x <= k.x <= b.x_max + slack_x
            assert b.y_min - slack_y <= k.y <= b.y_max + slack_y


#: Prompt rows of one keypointer inference (PROMPT_BOXES of its config.pbtxt).
MODEL_ROWS = ModelSpec.from_config(config_json("keypointer")).prompt_capacity


@pytest.mark.timeout(300)
async def test_person_keypoints_answer_every_prompt_in_order_when_there_are_more_than_the_model_rows(
        keypoint_detector):
    count = MODEL_ROWS + 8
    width, height = 640, 300
    data = drawn_people(width, height)
    prompts = [box((k % 10) * width / 12, (k // 10) * height / 8, (k % 10) * width / 12 + width / 5,
                   (k // 10) * height / 8 + height * 0.6) for k in range(count)]

    def ask(boxes):
        return keypoint_detector.DetectKeypoints(keypoints_pb2.KeypointRequest(
            image=common_pb2.Image(data=data), prompt_boxes=boxes, labeled_threshold=0.0,
            review_policy=common_pb2.ReviewPolicy(include_rejected=True)), timeout=RPC_TIMEOUT_S)

    whole, first, rest = await asyncio.gather(ask(prompts), ask(prompts[:MODEL_ROWS]), ask(prompts[MODEL_ROWS:]))
    assert [i.prompt_index for i in whole.instances] == list(range(count))
    alone = list(first.instances) + list(rest.instances)
    assert len(alone) == count
    for k, (got, want) in enumerate(zip(whole.instances, alone, strict=True)):
        assert got.detection.box == want.detection.box == prompts[k]
        assert got.detection.score == want.detection.score, k
        assert list(got.keypoints) == list(want.keypoints), k
    assert len({i.keypoints[0].x for i in whole.instances[MODEL_ROWS:]}) > 1, "the second inference's rows are alike"


async def test_person_keypoints_follow_the_request_thresholds_when_automatic(keypoint_detector):
    reply = await keypoint_detector.DetectKeypoints(keypoints_pb2.KeypointRequest(
        image=common_pb2.Image(data=photo_bytes("astronaut.png")), kind=PERSON,
        visible_threshold=0.52, labeled_threshold=0.49, max_instances=4,
        review_policy=common_pb2.ReviewPolicy(include_rejected=True)), timeout=RPC_TIMEOUT_S)

    assert reply.provenance.model_name == "keypointer"
    assert reply.provenance.weights == common_pb2.WEIGHTS_PRETRAINED
    assert reply.schema.name == "coco_person_17"
    assert 0 < len(reply.instances) <= 4
    flags = set()
    for instance in reply.instances:
        assert not instance.HasField("prompt_index")
        for k in instance.keypoints:
            expected = 2 if k.score >= 0.52 else 1 if k.score >= 0.49 else 0
            assert k.visibility == expected
            flags.add(k.visibility)
            if k.visibility == 0:
                assert (k.x, k.y) == (0, 0)
            else:
                assert 0 <= k.x <= 512 and 0 <= k.y <= 512


def _boxes(n: int, b=None) -> list:
    return [b or box(1, 1, 50, 50) for _ in range(n)]


@pytest.mark.parametrize(("request_fields", "field"), [
    ({"image": common_pb2.Image(data=b"\x89PNG\r\n\x1a\n broken")}, "image.data"),
    ({"kind": FACE, "prompt_boxes": _boxes(1)}, "prompt_boxes"),
    ({"kind": 7}, "kind"),
    ({"prompt_boxes": _boxes(KeypointSettings().max_prompts + 1)}, "prompt_boxes"),
    ({"prompt_boxes": _boxes(1, box(10, 10, 5, 30))}, "prompt_boxes[0]"),
    ({"prompt_boxes": _boxes(2) + _boxes(1, box(10, 10, 30, 10))}, "prompt_boxes[2]"),
    ({"prompt_boxes": _boxes(1, box(10, 10, 30, float("inf")))}, "prompt_boxes[0]"),
    ({"prompt_boxes": _boxes(1, box(-50, -50, -10, -10))}, "prompt_boxes[0]"),
    ({"visible_threshold": 1.5}, "visible_threshold"),
    ({"labeled_threshold": -0.5}, "labeled_threshold"),
    ({"visible_threshold": 0.3, "labeled_threshold": 0.6}, "labeled_threshold"),
    ({"score_threshold": -1}, "score_threshold"),
])
async def test_detect_keypoints_rejects_bad_requests_with_the_field_name_when_fields_are_invalid(
        keypoint_detector, request_fields, field):
    request = keypoints_pb2.KeypointRequest(image=common_pb2.Image(data=drawn_people(200, 100)))
    request.MergeFrom(keypoints_pb2.KeypointRequest(**request_fields))
    assert await invalid_argument_field(keypoint_detector.DetectKeypoints, request, RPC_TIMEOUT_S) == field


async def test_keypointer_model_batches_requests_when_they_arrive_concurrently(keypoint_detector, triton):
    requests = [
        keypoints_pb2.KeypointRequest(
            image=common_pb2.Image(data=drawn_people(300 + 20 * i, 200), image_id=str(i)),
            prompt_boxes=_boxes(i % 3, box(5, 5, 100, 150)), score_threshold=0.9,
        )
        for i in range(12)
    ]
    replies, inferences, executions = await concurrent_counts(
        triton.grpc_url, "keypointer", keypoint_detector.DetectKeypoints, requests, RPC_TIMEOUT_S)
    assert [r.image_id for r in replies] == [str(i) for i in range(12)]
    assert [len(r.instances) for r in replies if r.image_id in ("1", "2")] == [1, 2]
    assert inferences == 12
    assert executions < inferences, f"{executions} executions for {inferences} inferences: no batching"


async def _person_then_face(triton_url: str, data: bytes, image_state_max_bytes: int):
    """A fresh keypoints service: one person request, then one face request, of `data`.
    Returns (person reply, face reply, the service's metrics)."""
    metrics = Metrics("keypoints")
    settings = KeypointSettings(grpc_port=0, metrics_port=None, triton_url=triton_url,
                                image_state_max_bytes=image_state_max_bytes)
    async with running(build_app(settings, metrics)) as address, \
            stub(address, "keypoints", "KeypointDetectorStub") as detector:
        replies = [await detector.DetectKeypoints(keypoints_pb2.KeypointRequest(
            image=common_pb2.Image(data=data, image_id="same"), kind=kind,
            review_policy=common_pb2.ReviewPolicy(include_rejected=True)), timeout=RPC_TIMEOUT_S)
            for kind in (PERSON, FACE)]
    return *replies, metrics


def _image_state(metrics: Metrics, name: str) -> float:
    value = metrics.registry.get_sample_value(
        f"prelabel_image_state_{name}", {"service": "keypoints", "kind": "letterbox:512x512"})
    return 0.0 if value is None else value


async def test_person_and_face_requests_decode_the_image_once_when_they_carry_the_same_image(triton):
    data = photo_bytes("astronaut.png")  # both CPU-profile models take 512x512
    person, face, metrics = await _person_then_face(triton.grpc_url, data, 64 * 1024 * 1024)
    assert (_image_state(metrics, "misses_total"), _image_state(metrics, "hits_total")) == (1, 1)
    assert _image_state(metrics, "bytes") == 512 * 512 * 3

    uncached_person, uncached_face, uncached_metrics = await _person_then_face(triton.grpc_url, data, 0)
    assert (_image_state(uncached_metrics, "misses_total"), _image_state(uncached_metrics, "hits_total")) == (0, 0)
    assert len(person.instances) > 0 and len(face.instances) == 1
    assert person == uncached_person
    assert face == uncached_face
