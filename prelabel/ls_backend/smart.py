"""Label Studio's interactive pre-annotation ("smart" tools) answered with the suite's
interactive segmentation (Segmenter.SegmentClick through the router).

With a labeling config whose KeyPointLabels and/or RectangleLabels carry `smart="true"` and
an ML backend connection with "interactive preannotations" on, Label Studio's editor, each
time the annotator finishes a smart region, posts `/api/ml/<id>/interactive-annotating`
`{"task": id, "context": {"result": [...]}}`; Label Studio forwards it as a /predict of
that one task with the context in `params.context`. `context.result` holds the regions as
the editor serializes them: every smart region of the same type and label on the image so
far (all the keypoints of the label, or all its rectangles), each

    {"type": "keypointlabels", "from_name": ..., "to_name": <image>, "original_width": w,
     "original_height": h, "value": {"x": %, "y": %, "width": %, "keypointlabels": [label]},
     "is_positive": true}                       (keypoint: x, y in percent of the image)
    {"type": "rectanglelabels", ..., "value": {"x": %, "y": %, "width": %, "height": %,
     "rectanglelabels": [label]}}               (rectangle: top-left corner and size)

A keypoint's `is_positive` is false for a negative click (Alt+click with the smart
keypoint tool): the mask must leave that point out. A keypoint without it (an API caller)
is a positive click. Of several rectangles the last (the newest) is the box.

The answer is one `brushlabels` region: the best candidate mask in Label Studio's brush
RLE, labelled with the BrushLabels label named as the smart region's label, its score the
mask quality. Label Studio shows it as a suggestion; nothing is stored until the annotator
accepts it.
"""
from __future__ import annotations

import io
import math
import uuid
from dataclasses import dataclass

from PIL import Image

from prelabel.core import orientation
from prelabel.formats.labelstudio import brush_value
from prelabel.ls_backend.project import ConfigError, Project
from prelabel.v1 import common_pb2, segmentation_pb2

#: Regions of the context that are prompts, by result type.
_PROMPT_TYPES = ("keypointlabels", "rectanglelabels")


@dataclass(frozen=True)
class Click:
    x_pct: float
    y_pct: float
    positive: bool


@dataclass(frozen=True)
class BoxPct:
    """A rectangle as Label Studio gives it: top-left corner and size, percent of the image."""

    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class SmartPrompt:
    """What the annotator drew with the smart tools on one image, and its label."""

    clicks: tuple[Click, ...]
    box: BoxPct | None
    label: str


def _number(value: dict, key: str, where: str) -> float:
    number = value.get(key)
    if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number):
        raise ConfigError(f"{where}: value.{key} must be a finite number")
    return float(number)


def smart_prompt(context: object, project: Project) -> SmartPrompt | None:
    """The prompt in a /predict's `params.context`; None when it holds no smart keypoint or
    rectangle on the project's image (a plain prediction request). ConfigError (400) for a
    malformed one."""
    if not isinstance(context, dict) or not isinstance(context.get("result"), list):
        return None
    clicks: list[Click] = []
    box: BoxPct | None = None
    label = ""
    for index, region in enumerate(context["result"]):
        if not isinstance(region, dict) or region.get("type") not in _PROMPT_TYPES or \
                region.get("to_name", project.image) != project.image:
            continue
        where = f"context.result[{index}]"
        kind = region["type"]
        value = region.get("value")
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: no value")
        labels = value.get(kind)
        if not isinstance(labels, list) or not labels or not isinstance(labels[0], str):
            raise ConfigError(f"{where}: value.{kind} must name the label")
        label = labels[0]
        x, y = _number(value, "x", where), _number(value, "y", where)
        if kind == "keypointlabels":
            clicks.append(Click(x, y, region.get("is_positive", True) is not False))
        else:
            box = BoxPct(x, y, _number(value, "width", where), _number(value, "height", where))
    if not clicks and box is None:
        return None
    return SmartPrompt(tuple(clicks), box, label)


def brush_label(prompt: SmartPrompt, project: Project) -> tuple[str, str]:
    """(BrushLabels control name, its label for the prompt's label): the label of the same
    name, else of the same name in another case. ConfigError when there is none."""
    control = project.control("brush")
    if control is None:
        raise ConfigError("interactive pre-annotation answers with a mask: the labeling config needs a "
                          f"<BrushLabels toName=\"{project.image}\"> control")
    labels = set(control.labels.values())
    if prompt.label in labels:
        return control.name, prompt.label
    same = [name for name in sorted(labels) if name.lower() == prompt.label.lower()]
    if not same:
        raise ConfigError(f"the BrushLabels control {control.name!r} has no label {prompt.label!r} (the smart "
                          "tool's label names the mask's)")
    return control.name, same[0]


def upright_size(image: bytes) -> tuple[int, int]:
    """(width, height) of the image after EXIF orientation, from its header: the frame the
    suite's pixel coordinates are in (prelabel.core.orientation). ValueError when Pillow
    cannot read it."""
    try:
        with Image.open(io.BytesIO(image)) as im:
            return orientation.upright_size(im)
    except Exception as exc:  # Pillow raises many kinds for bytes that are not an image
        raise ValueError(f"not an image ({type(exc).__name__}: {exc})") from None


def click_request(prompt: SmartPrompt, image: bytes, image_id: str, size: tuple[int, int]) -> segmentation_pb2.ClickRequest:
    """The SegmentClick request: percent of the image to source pixels. One click alone asks
    for several candidates (SAM's advice for an ambiguous click; the best is taken)."""
    width, height = size
    points = [segmentation_pb2.PointPrompt(
        x=c.x_pct * width / 100, y=c.y_pct * height / 100,
        label=segmentation_pb2.POINT_LABEL_POSITIVE if c.positive else segmentation_pb2.POINT_LABEL_NEGATIVE)
        for c in prompt.clicks]
    request = segmentation_pb2.ClickRequest(
        image=common_pb2.Image(data=image, image_id=image_id),
        prompt=segmentation_pb2.ClickPrompt(points=points, multimask_output=len(points) == 1 and prompt.box is None))
    if prompt.box is not None:
        b = prompt.box
        request.prompt.box.x_min, request.prompt.box.y_min = b.x * width / 100, b.y * height / 100
        request.prompt.box.x_max = (b.x + b.width) * width / 100
        request.prompt.box.y_max = (b.y + b.height) * height / 100
    return request


def brush_region(response: segmentation_pb2.ClickResponse, control: str, label: str, image: str) -> dict | None:
    """The best candidate as a brushlabels region of `control`; None when there is no
    candidate or its mask is empty."""
    if not response.candidates:
        return None
    best = response.candidates[0].instance
    value = brush_value(best.mask, label)
    if value is None:
        return None
    return {"id": uuid.uuid4().hex[:10], "type": "brushlabels", "from_name": control, "to_name": image,
            "original_width": response.image_size.width, "original_height": response.image_size.height,
            "image_rotation": 0, "value": value, "score": round(float(best.mask_quality), 5)}
