"""`prelabel ls-backend`'s interactive pre-annotation pieces without Label Studio (smart.py):
reading the smart regions Label Studio sends, the click request, the brush answer.
(tests/tools/test_labelstudio.py runs it through the real Label Studio and the real suite.)"""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

from prelabel.formats import ls_brush
from prelabel.ls_backend.project import ConfigError, parse_config
from prelabel.ls_backend.server import Backend
from prelabel.ls_backend.settings import LsBackendSettings
from prelabel.ls_backend.smart import (
    BoxPct,
    Click,
    SmartPrompt,
    brush_label,
    brush_region,
    click_request,
    smart_prompt,
    upright_size,
)
from prelabel.v1 import segmentation_pb2
from tests.photos import encode, with_orientation

pytestmark = pytest.mark.timeout(60)

CONFIG = """<View>
  <Image name="img" value="$image"/>
  <KeyPointLabels name="click" toName="img" smart="true"><Label value="Cup"/></KeyPointLabels>
  <RectangleLabels name="box" toName="img" smart="true"><Label value="Cup"/></RectangleLabels>
  <BrushLabels name="mask" toName="img"><Label value="cup"/><Label value="Person"/></BrushLabels>
</View>"""
POSITIVE, NEGATIVE = segmentation_pb2.POINT_LABEL_POSITIVE, segmentation_pb2.POINT_LABEL_NEGATIVE


def keypoint(x: float, y: float, **extra) -> dict:
    """A smart keypoint as Label Studio's editor serializes it."""
    return {"id": "k", "type": "keypointlabels", "from_name": "click", "to_name": "img", "original_width": 600,
            "original_height": 400, "image_rotation": 0, "origin": "manual",
            "value": {"x": x, "y": y, "width": 0.5, "keypointlabels": ["Cup"], "labels": ["Cup"]}, **extra}


def rectangle(x: float, y: float, width: float, height: float) -> dict:
    return {"id": "r", "type": "rectanglelabels", "from_name": "box", "to_name": "img",
            "value": {"x": x, "y": y, "width": width, "height": height, "rotation": 0, "rectanglelabels": ["Cup"]}}


def test_smart_prompt_reads_positive_and_negative_clicks_and_the_newest_box_when_context_has_them():
    project = parse_config(CONFIG)
    context = {"result": [keypoint(50, 50, is_positive=True), keypoint(70, 96.25, is_positive=False),
                          keypoint(10, 10), rectangle(1, 2, 3, 4), rectangle(10, 20, 30, 40)]}
    assert smart_prompt(context, project) == SmartPrompt(
        (Click(50, 50, True), Click(70, 96.25, False), Click(10, 10, True)), BoxPct(10, 20, 30, 40), "Cup")


@pytest.mark.parametrize("context", [None, {}, {"result": []}, "x",
                                     {"result": [{"type": "brushlabels", "to_name": "img", "value": {}}]},
                                     {"result": [{**keypoint(5, 5), "to_name": "another_image"}]}])
def test_smart_prompt_is_none_when_context_holds_no_smart_region_on_the_image(context):
    assert smart_prompt(context, parse_config(CONFIG)) is None


@pytest.mark.parametrize("region, field", [
    ({**keypoint(1, 1), "value": {"y": 1, "keypointlabels": ["Cup"]}}, "value.x"),
    ({**keypoint(1, 1), "value": {"x": float("nan"), "y": 1, "keypointlabels": ["Cup"]}}, "value.x"),
    ({**keypoint(1, 1), "value": {"x": 1, "y": 1, "keypointlabels": []}}, "value.keypointlabels"),
    ({**rectangle(1, 1, 1, 1), "value": {"x": 1, "y": 1, "width": 1, "rectanglelabels": ["Cup"]}}, "value.height"),
])
def test_smart_prompt_names_the_field_when_a_region_is_malformed(region, field):
    with pytest.raises(ConfigError, match=rf"context.result\[1\]: {field}"):
        smart_prompt({"result": [keypoint(1, 1), region]}, parse_config(CONFIG))


def test_click_request_puts_the_clicks_and_box_in_source_pixels_when_given_percent():
    prompt = SmartPrompt((Click(50, 50, True), Click(70, 96.25, False)), BoxPct(10, 20, 30, 40), "Cup")
    request = click_request(prompt, b"png", "7", (600, 400))
    assert request.image.image_id == "7" and request.image.data == b"png"
    assert [(p.x, p.y, p.label) for p in request.prompt.points] == [(300, 200, POSITIVE), (420, 385, NEGATIVE)]
    box = request.prompt.box
    assert (box.x_min, box.y_min, box.x_max, box.y_max) == (60, 80, 240, 240)
    assert not request.prompt.multimask_output
    alone = click_request(SmartPrompt((Click(50, 50, True),), None, "Cup"), b"png", "7", (600, 400))
    assert alone.prompt.multimask_output and not alone.prompt.HasField("box")  # one click: SAM's candidates


def test_brush_label_is_the_brush_label_of_the_same_name_and_is_refused_when_there_is_none():
    project = parse_config(CONFIG)
    assert brush_label(SmartPrompt((), None, "Cup"), project) == ("mask", "cup")  # another case
    assert brush_label(SmartPrompt((), None, "Person"), project) == ("mask", "Person")
    with pytest.raises(ConfigError, match="BrushLabels control 'mask' has no label 'Dog'"):
        brush_label(SmartPrompt((), None, "Dog"), project)
    no_brush = parse_config(CONFIG.replace('<BrushLabels name="mask" toName="img"><Label value="cup"/>'
                                           '<Label value="Person"/></BrushLabels>', ""))
    with pytest.raises(ConfigError, match="needs a <BrushLabels"):
        brush_label(SmartPrompt((), None, "Cup"), no_brush)


def test_upright_size_swaps_the_axes_when_exif_orientation_turns_the_image():
    upright = Image.new("RGB", (60, 40))
    assert upright_size(encode(upright)) == (60, 40)
    for orientation in (3, 6, 8):
        assert upright_size(with_orientation(upright, orientation)) == (60, 40), orientation
    with pytest.raises(ValueError, match="not an image"):
        upright_size(b"<html>404</html>")


def test_brush_region_is_the_best_candidate_in_label_studio_rle_and_none_when_its_mask_is_empty():
    mask = np.zeros((40, 60), np.uint8)
    mask[10:30, 20:50] = 1
    response = segmentation_pb2.ClickResponse()
    response.image_size.width, response.image_size.height = 60, 40
    for quality, m in ((0.9, mask), (0.5, np.ones_like(mask))):
        rle = coco_mask.encode(np.asfortranarray(m))
        instance = response.candidates.add().instance
        instance.mask.size[:] = rle["size"]
        instance.mask.counts = rle["counts"]
        instance.mask_quality = quality
    region = brush_region(response, "mask", "cup", "img")
    assert region is not None
    assert {k: v for k, v in region.items() if k not in ("id", "value")} == {
        "type": "brushlabels", "from_name": "mask", "to_name": "img", "original_width": 60, "original_height": 40,
        "image_rotation": 0, "score": 0.9}
    assert region["value"] == {"format": "rle", "rle": ls_brush.encode(mask), "brushlabels": ["cup"]}
    del response.candidates[:]
    assert brush_region(response, "mask", "cup", "img") is None
    response.candidates.add().instance.mask.size[:] = [40, 60]  # an empty mask
    assert brush_region(response, "mask", "cup", "img") is None


def test_predict_refuses_an_interactive_request_before_fetching_when_two_tasks_or_no_brush_label():
    backend = Backend(LsBackendSettings(), client=object())  # neither Label Studio nor the router is asked
    body = {"label_config": CONFIG, "tasks": [{"id": 1, "data": {"image": "/data/a.png"}}] * 2,
            "params": {"context": {"result": [keypoint(50, 50)]}}}
    with pytest.raises(ConfigError, match="an interactive request .* is for one task"):
        backend.predict(body)
    dog = keypoint(50, 50)
    dog["value"]["keypointlabels"] = ["Dog"]
    with pytest.raises(ConfigError, match="no label 'Dog'"):
        backend.predict({**body, "tasks": body["tasks"][:1], "params": {"context": {"result": [dog]}}})
