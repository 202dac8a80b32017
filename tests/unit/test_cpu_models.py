"""The CPU profile's real models (NanoDet, MoveNet multipose, selfie + GrabCut, MTCNN),
run in-process from their config.pbtxt on real photos.

Expectations were checked by hand on the pictures (skimage's astronaut, coffee,
motorcycle_left, chelsea, horse): boxes are where the object is in source pixels, not
what a model happened to output once.
"""
from __future__ import annotations

import numpy as np
import pytest

from prelabel.core.labels import COCO_CATEGORIES
from services.common.letterbox import (
    Letterbox,
    boxes_to_model,
    boxes_to_source,
    letterbox_for,
    letterbox_image,
    points_to_source,
)
from tests.geometry import iou
from tests.mask_oracles import paste_mask
from tests.photos import photo
from tests.unit.triton_models import cpu_model, run

pytestmark = pytest.mark.timeout(300)

# Hand-drawn boxes (x_min, y_min, x_max, y_max), source pixels.
ASTRONAUT_PERSON = (10, 10, 365, 512)
ASTRONAUT_FACE = (180, 60, 270, 175)  # also what MTCNN finds (tests/integration/test_detection.py)
ASTRONAUT_FLAG = (20, 20, 90, 160)  # flag and wall left of her hair, inside her box
COFFEE_CUP = (165, 15, 420, 255)
MOTORCYCLE = (95, 80, 690, 455)


def model_input(name: str, size: int) -> tuple[np.ndarray, Letterbox]:
    image = photo(name).convert("RGB")
    lb = letterbox_for(image.width, image.height, size, size)
    out = np.zeros((1, size, size, 3), np.uint8)
    letterbox_image(image, lb, out=out[0])
    return out, lb


def prompts(boxes_model: np.ndarray, rows: int, labels: list[int] | None = None) -> dict:
    inputs = {"PROMPT_BOXES": np.zeros((1, rows, 4), np.float32),
              "PROMPT_COUNT": np.array([[len(boxes_model)]], np.int32),
              "PROMPT_LABELS": np.zeros((1, rows), np.int32)}
    inputs["PROMPT_BOXES"][0, : len(boxes_model)] = boxes_model
    if labels:
        inputs["PROMPT_LABELS"][0, : len(labels)] = labels
    return inputs


def rows(out: dict, i: int = 0) -> list[dict]:
    return [{k: v[i][r] for k, v in out.items() if k not in ("COUNT", "PROVENANCE")}
            for r in range(int(out["COUNT"][i][0]))]


@pytest.fixture(scope="module")
def detector():
    return cpu_model("coco_detector")


@pytest.fixture(scope="module")
def keypointer():
    return cpu_model("keypointer")


@pytest.fixture(scope="module")
def segmenter():
    return cpu_model("segmenter")


def detections(detector, name: str):
    x, lb = model_input(name, 416)
    return [(COCO_CATEGORIES[int(r["LABELS"])], float(r["SCORES"]), tuple(boxes_to_source(r["BOXES"], lb)[0]))
            for r in rows(run(detector, {"IMAGE": x}))]


@pytest.mark.parametrize("name,category,where", [
    ("astronaut.png", "person", ASTRONAUT_PERSON),
    ("motorcycle_left.png", "motorcycle", MOTORCYCLE),
    ("chelsea.png", "cat", (0, 0, 451, 300)),
])
def test_nanodet_finds_the_main_object_first_when_real_photo(detector, name, category, where):
    found = detections(detector, name)
    assert found, "nothing detected"
    top_category, score, box = found[0]
    assert top_category == category and score > 0.4, found[:3]
    assert iou(box, where) > 0.7, box


def test_nanodet_finds_the_cup_with_scores_sorted_and_nms_applied_when_coffee(detector):
    found = detections(detector, "coffee.png")
    cups = [(s, b) for c, s, b in found if c == "cup"]
    assert cups and iou(cups[0][1], COFFEE_CUP) > 0.6, cups
    scores = [s for _, s, _ in found]
    assert scores == sorted(scores, reverse=True)
    # Per-class NMS: no two boxes of one class overlap more than the NMS IoU.
    for i, (ci, _, bi) in enumerate(found):
        for cj, _, bj in found[i + 1:]:
            assert ci != cj or iou(bi, bj) <= 0.6 + 1e-6


@pytest.fixture(scope="module")
def faces():
    return cpu_model("face_detector")


def mtcnn_face(faces, name: str) -> tuple:
    x, lb = model_input(name, 512)
    (face, *_) = rows(run(faces, {"IMAGE": x}))
    assert face["SCORES"] > 0.99
    return tuple(boxes_to_source(face["BOXES"], lb)[0])


def test_mtcnn_face_is_where_the_face_is_when_astronaut(faces):
    assert iou(mtcnn_face(faces, "astronaut.png"), ASTRONAUT_FACE) > 0.7


@pytest.mark.parametrize("name", ["astronaut.png", "camera.png"])
def test_movenet_puts_the_nose_inside_the_face_mtcnn_finds_when_automatic(keypointer, faces, name):
    x, lb = model_input(name, 512)
    inputs = {"IMAGE": x, **prompts(np.zeros((0, 4)), 32)}
    inputs.pop("PROMPT_LABELS")
    persons = rows(run(keypointer, inputs))
    assert persons and persons[0]["SCORES"] > 0.2  # multipose lightning scores run low
    points = points_to_source(persons[0]["KEYPOINTS"], lb)
    nose, left_shoulder, right_shoulder = points[0], points[5], points[6]
    fx0, fy0, fx1, fy1 = mtcnn_face(faces, name)
    assert fx0 <= nose[0] <= fx1 and fy0 <= nose[1] <= fy1, nose
    if name == "astronaut.png":  # she faces the camera: shoulders below the face, hers left on our right
        assert left_shoulder[1] > fy1 - 20 and right_shoulder[1] > fy1 - 20
        assert left_shoulder[0] > right_shoulder[0]
        assert iou(tuple(boxes_to_source(persons[0]["BOXES"], lb)[0]), ASTRONAUT_PERSON) > 0.6


def test_movenet_answers_one_row_per_prompt_in_order_when_prompted(keypointer):
    x, lb = model_input("astronaut.png", 512)
    boxes = boxes_to_model(np.array([ASTRONAUT_PERSON, (400, 400, 500, 500)], np.float32), lb)
    inputs = {"IMAGE": x, **prompts(boxes, 32)}
    inputs.pop("PROMPT_LABELS")
    out = run(keypointer, inputs)
    assert out["COUNT"][0][0] == 2
    person, empty_corner = rows(out)
    np.testing.assert_allclose(person["BOXES"], boxes[0], atol=1e-4)
    nose = points_to_source(person["KEYPOINTS"], lb)[0]
    assert ASTRONAUT_FACE[0] <= nose[0] <= ASTRONAUT_FACE[2] and ASTRONAUT_FACE[1] <= nose[1] <= ASTRONAUT_FACE[3]
    assert person["SCORES"] > empty_corner["SCORES"]


def mask_in_source(row: dict, lb: Letterbox, width: int, height: int) -> np.ndarray:
    """Paste a MASKS row (probabilities over its box) into a source-size boolean image."""
    box = points_to_source(row["BOXES"].reshape(2, 2), lb).reshape(4)
    pasted = paste_mask(row["MASKS"], box, width, height)
    full = np.zeros((height, width), bool)
    rows_, cols = pasted.probs.shape
    full[pasted.y0: pasted.y0 + rows_, pasted.x0: pasted.x0 + cols] = pasted.probs >= 0.5
    return full


def region_share(mask: np.ndarray, box) -> float:
    x0, y0, x1, y1 = (int(v) for v in box)
    return float(mask[y0:y1, x0:x1].mean())


def test_segmenter_masks_the_person_and_not_the_flag_when_automatic(segmenter):
    x, lb = model_input("astronaut.png", 512)
    out = run(segmenter, {"IMAGE": x, **prompts(np.zeros((0, 4)), 32)})
    persons = [r for r in rows(out) if int(r["LABELS"]) == 1]
    assert persons, [int(r["LABELS"]) for r in rows(out)]
    mask = mask_in_source(persons[0], lb, 512, 512)
    assert region_share(mask, ASTRONAUT_FACE) > 0.8  # her face is in
    assert region_share(mask, (60, 250, 330, 500)) > 0.8  # her suit is in
    assert region_share(mask, ASTRONAUT_FLAG) < 0.1  # the flag beside her is out
    assert 0.3 < region_share(mask, ASTRONAUT_PERSON) < 0.9  # a shape, not the rectangle


def test_segmenter_mask_follows_the_horse_inside_its_box_when_prompted_without_category(segmenter):
    image = np.asarray(photo("horse.png").convert("L"))
    truth = image < 128  # the horse is a dark silhouette on white
    ys, xs = np.nonzero(truth)
    box = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    x, lb = model_input("horse.png", 512)
    out = run(segmenter, {"IMAGE": x, **prompts(boxes_to_model(np.array([box], np.float32), lb), 32)})
    (row,) = rows(out)
    mask = mask_in_source(row, lb, image.shape[1], image.shape[0])
    inter, union = (mask & truth).sum(), (mask | truth).sum()
    assert inter / union > 0.75, inter / union
    assert COCO_CATEGORIES[int(row["LABELS"])] == "horse"  # named by the overlapping detection


@pytest.mark.parametrize("model", ["coco_detector", "keypointer", "segmenter"])
def test_batch_of_four_equals_four_batches_of_one_when_mixed_photos(model, detector, keypointer, segmenter):
    instance = {"coco_detector": detector, "keypointer": keypointer, "segmenter": segmenter}[model]
    size = int(instance.config["input"][0]["dims"][0])
    items = []
    for name, prompted in [("astronaut.png", False), ("coffee.png", True), ("chelsea.png", False),
                           ("motorcycle_left.png", True)]:
        x, lb = model_input(name, size)
        inputs = {"IMAGE": x}
        if model != "coco_detector":
            boxes = np.array([[size * 0.2, size * 0.2, size * 0.7, size * 0.8]], np.float32) if prompted else np.zeros((0, 4))
            inputs.update(prompts(boxes, 32))
            if model == "keypointer":
                inputs.pop("PROMPT_LABELS")
        items.append(inputs)
    batch = {k: np.concatenate([i[k] for i in items]) for k in items[0]}
    together = run(instance, batch)
    for i, inputs in enumerate(items):
        alone = run(instance, inputs)
        for name, value in alone.items():
            np.testing.assert_array_equal(together[name][i], value[0], err_msg=f"{model} item {i} {name}")


def test_selfie_batch_of_person_crops_equals_crops_one_by_one(segmenter):
    """The selfie graph is converted with a batch axis (Reshape constants patched):
    one batch of three crops must give what three separate runs give."""
    x, lb = model_input("astronaut.png", 512)
    boxes = [boxes_to_model(np.array([b], np.float32), lb)[0]
             for b in (ASTRONAUT_PERSON, ASTRONAUT_FACE, (200, 250, 480, 500))]
    together = segmenter.selfie.person_probs(x[0], boxes, 64)
    for box, grid in zip(boxes, together, strict=False):
        (alone,) = segmenter.selfie.person_probs(x[0], [box], 64)
        np.testing.assert_allclose(grid, alone, atol=1e-5)
