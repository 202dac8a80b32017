"""Prompts through the contract's declared kinds, without Triton: checks before and after
decoding, model-input tensors of the shipped promptable configs, splitting a request's
prompts over inferences of the model's size and joining the answers back in order."""
from __future__ import annotations

import numpy as np
import pytest
from tritonclient.grpc import InferInput

from prelabel.core.errors import InvalidArgument
from prelabel.v1 import common_pb2
from services.common.letterbox import letterbox_for
from services.common.prompts import (
    Prompt,
    check_prompts,
    joined,
    placed,
    prompt_tensors,
    split,
    to_model,
)
from services.common.triton_client import InferOutput, ModelSpec, _triton_dtype
from services.modelkit.contract import (
    BOX_PROMPTS,
    HEADS,
    KEYPOINTS_HEAD,
    NUMPY_DTYPES,
    PROMPT_BOXES,
    PROMPT_LABELS,
    PROMPT_POINT_SIGNS,
    PROMPT_POINTS,
    PROMPT_TEXT,
)
from tests.unit.triton_models import config_json

SEGMENTER = ModelSpec.from_config(config_json("segmenter"))
KEYPOINTER = ModelSpec.from_config(config_json("keypointer"))
DETECTOR = ModelSpec.from_config(config_json("coco_detector"))


def box(x0, y0, x1, y1) -> common_pb2.Box:
    return common_pb2.Box(x_min=x0, y_min=y0, x_max=x1, y_max=y1)


def box_prompt(k: int, b: common_pb2.Box, label: int | None = None) -> Prompt:
    rows: dict = {PROMPT_BOXES: b}
    if label is not None:
        rows[PROMPT_LABELS] = label
    return Prompt(f"prompts[{k}].box", rows)


def test_model_spec_takes_its_prompt_capacity_from_the_prompt_tensors_when_the_head_takes_prompts():
    assert (SEGMENTER.prompt_capacity, KEYPOINTER.prompt_capacity, DETECTOR.prompt_capacity) == (32, 32, 0)
    assert SEGMENTER.contract_head.prompts == (BOX_PROMPTS,)


@pytest.mark.parametrize("spec,prompts,field,message", [
    (DETECTOR, [box_prompt(0, box(1, 1, 5, 5))], "prompts", "model coco_detector takes no prompt boxes"),
    (SEGMENTER, [Prompt("clicks[0]", {PROMPT_POINTS: [[1, 1]]})], "prompts", "model segmenter takes no prompt points"),
    (SEGMENTER, [box_prompt(k, box(1, 1, 5, 5)) for k in range(11)], "prompts", "at most 10 prompts per request"),
    (SEGMENTER, [box_prompt(0, box(1, 1, 5, 5)), box_prompt(1, box(5, 1, 5, 5))], "prompts[1].box",
     "needs x_min < x_max"),
    (SEGMENTER, [box_prompt(0, box(float("nan"), 1, 5, 5))], "prompts[0].box", "coordinates must be finite"),
])
def test_check_prompts_refuses_naming_the_field_when_kind_count_or_shape_is_wrong(spec, prompts, field, message):
    with pytest.raises(InvalidArgument, match=message) as caught:
        check_prompts(prompts, spec, "prompts", limit=10)
    assert caught.value.field == field


def test_check_prompts_accepts_more_prompts_than_the_model_rows_when_under_the_request_bound():
    check_prompts([box_prompt(k, box(1, 1, 5, 5)) for k in range(40)], SEGMENTER, "prompts", limit=1000)


def test_placed_clips_boxes_to_the_image_and_refuses_one_outside_it():
    (x0, y0, x1, y1) = placed(box_prompt(0, box(-5, 10, 500, 60)), 300, 200).rows[PROMPT_BOXES]
    assert (x0, y0, x1, y1) == (0, 10, 300, 60)
    with pytest.raises(InvalidArgument, match="outside the 300x200 image") as caught:
        placed(box_prompt(3, box(400, 10, 500, 60)), 300, 200)
    assert caught.value.field == "prompts[3].box"


def test_placed_and_to_model_map_points_like_boxes_when_the_kind_is_declared_but_not_served():
    click = Prompt("clicks[0]", {PROMPT_POINTS: [[10, 20], [30, 40]], PROMPT_POINT_SIGNS: [1, 0]})
    lb = letterbox_for(200, 100, 400, 400)  # scale 2, 100 px of padding above
    model = to_model(placed(click, 200, 100), lb)
    np.testing.assert_allclose(model.rows[PROMPT_POINTS], [[20, 140], [60, 180]])
    assert list(model.rows[PROMPT_POINT_SIGNS]) == [1, 0]
    with pytest.raises(InvalidArgument, match="outside the 200x100 image"):
        placed(Prompt("clicks[1]", {PROMPT_POINTS: [[10, 120]]}), 200, 100)


def test_prompt_tensors_fill_the_declared_tensors_of_the_model_and_pad_the_rest_when_boxes_are_prompted():
    lb = letterbox_for(256, 256, 512, 512)
    prompts = [to_model(placed(box_prompt(0, box(10, 20, 30, 40), label=18), 256, 256), lb),
               to_model(placed(box_prompt(1, box(0, 0, 256, 256), label=0), 256, 256), lb)]
    tensors = prompt_tensors(prompts, SEGMENTER)
    assert set(tensors) == {"PROMPT_BOXES", "PROMPT_LABELS", "PROMPT_COUNT"}
    assert tensors["PROMPT_BOXES"].shape == (1, 32, 4) and tensors["PROMPT_BOXES"].dtype == np.float32
    np.testing.assert_allclose(tensors["PROMPT_BOXES"][0, :2], [[20, 40, 60, 80], [0, 0, 512, 512]])
    assert not tensors["PROMPT_BOXES"][0, 2:].any()
    assert list(tensors["PROMPT_LABELS"][0, :3]) == [18, 0, 0] and tensors["PROMPT_LABELS"].dtype == np.int32
    assert tensors["PROMPT_COUNT"].tolist() == [[2]]
    # The keypointer takes boxes without categories: the companion tensor is not sent.
    assert set(prompt_tensors(prompts, KEYPOINTER)) == {"PROMPT_BOXES", "PROMPT_COUNT"}
    # No prompts: the automatic mode, every row padding.
    automatic = prompt_tensors([], KEYPOINTER)
    assert automatic["PROMPT_COUNT"].tolist() == [[0]] and not automatic["PROMPT_BOXES"].any()


def test_split_groups_prompts_in_order_and_keeps_one_inference_when_there_are_none():
    prompts = [box_prompt(k, box(1, 1, 5, 5)) for k in range(70)]
    groups = split(prompts, 32)
    assert [len(g) for g in groups] == [32, 32, 6]
    assert [p.field for g in groups for p in g] == [p.field for p in prompts]
    assert split([], 32) == [[]]
    with pytest.raises(ValueError, match="do not fit"):
        prompt_tensors(prompts[:33], SEGMENTER)


def answer(first: int, rows: int, count: int) -> InferOutput:
    """A keypoints-head answer whose row r carries the value first + r (padding beyond count)."""
    values = np.zeros(rows, np.float32)
    values[:count] = np.arange(first, first + count)
    outputs = {"BOXES": np.repeat(values[None, :, None], 4, axis=2), "SCORES": values[None],
               "LABELS": np.ones((1, rows), np.int32), "KEYPOINTS": np.repeat(values[None, :, None, None], 17, 2)
               .repeat(2, 3), "KEYPOINT_SCORES": np.repeat(values[None, :, None], 17, 2),
               "COUNT": np.array([[count]], np.int32)}
    return InferOutput(outputs=outputs, provenance=common_pb2.Provenance(model_name="keypointer"))


def test_joined_concatenates_each_groups_answer_rows_in_prompt_order():
    one = joined([answer(0, 32, 32), answer(32, 32, 8)], [32, 8], KEYPOINTS_HEAD)
    assert one.outputs["COUNT"].tolist() == [[40]]
    assert one.outputs["SCORES"].shape == (1, 40)
    assert one.outputs["SCORES"][0].tolist() == list(range(40))
    assert one.outputs["KEYPOINTS"].shape == (1, 40, 17, 2) and one.outputs["KEYPOINTS"][0, 39, 16, 1] == 39
    assert one.provenance.model_name == "keypointer"
    single = answer(0, 32, 3)
    assert joined([single], [3], KEYPOINTS_HEAD) is single


def test_text_prompt_tensors_travel_as_triton_bytes_when_a_head_takes_them():
    # No head takes text yet; the dtype path a text prompt will take is ready end to end.
    assert NUMPY_DTYPES[PROMPT_TEXT.dtype] == "object"
    text = np.full((1, 4), PROMPT_TEXT.pad, dtype=PROMPT_TEXT.numpy_dtype)
    text[0, 0] = b"a red mug"
    assert _triton_dtype(text) == "BYTES"
    tensor = InferInput(PROMPT_TEXT.name, list(text.shape), _triton_dtype(text))
    tensor.set_data_from_numpy(text)  # tritonclient serialises it (raises on a dtype mismatch)
    # Every tensor of every head has a numpy dtype the services can build it with.
    assert all(NUMPY_DTYPES[t.dtype] for h in HEADS.values() for t in h.inputs + h.outputs)
