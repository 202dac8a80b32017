"""Click prompts (prelabel.v1.ClickPrompt) read and checked: every bad value becomes
InvalidArgument naming the field, in two steps like every prompt
(services.common.prompts): `read_click` before the image is decoded (counts, labels,
finite numbers, ordered box), `placed_click` against the decoded image (points on it,
the box overlapping it, a previous mask of the engine's own shape)."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from prelabel.core.errors import InvalidArgument
from prelabel.v1 import common_pb2, segmentation_pb2
from services.common import requests as fields
from services.common.prompts import check_box_shape

DEFAULT_MASK_THRESHOLD = 0.5


@dataclass(frozen=True)
class Click:
    """A ClickPrompt as numbers, in source pixels."""

    field: str  # names the prompt in errors ("prompt" or "click")
    positive: np.ndarray  # float64 [k, 2] (x, y)
    negative: np.ndarray  # float64 [k, 2]
    box: tuple[float, float, float, float] | None
    previous: segmentation_pb2.LowResMask | None  # checked by the engine that made it
    multimask: bool
    mask_threshold: float
    polygons: bool
    category: common_pb2.Category


def read_click(prompt: segmentation_pb2.ClickPrompt, field: str, max_points: int) -> Click:
    """The checks that need no image."""
    if len(prompt.points) > max_points:
        raise InvalidArgument(f"{field}.points", f"at most {max_points} points per prompt, got {len(prompt.points)}")
    if not prompt.points and not prompt.HasField("box"):
        raise InvalidArgument(field, "needs at least one point or a box")
    positive, negative = [], []
    for k, point in enumerate(prompt.points):
        name = f"{field}.points[{k}]"
        if not (math.isfinite(point.x) and math.isfinite(point.y)):
            raise InvalidArgument(name, "coordinates must be finite")
        if point.label == segmentation_pb2.POINT_LABEL_POSITIVE:
            positive.append((point.x, point.y))
        elif point.label == segmentation_pb2.POINT_LABEL_NEGATIVE:
            negative.append((point.x, point.y))
        else:
            raise InvalidArgument(f"{name}.label", "must be POINT_LABEL_POSITIVE or POINT_LABEL_NEGATIVE")
    box = None
    if prompt.HasField("box"):
        check_box_shape(prompt.box, f"{field}.box")
        b = prompt.box
        box = (b.x_min, b.y_min, b.x_max, b.y_max)
    return Click(
        field=field,
        positive=np.asarray(positive, np.float64).reshape(-1, 2),
        negative=np.asarray(negative, np.float64).reshape(-1, 2),
        box=box,
        previous=prompt.previous_mask if prompt.HasField("previous_mask") else None,
        multimask=prompt.multimask_output,
        mask_threshold=fields.probability(prompt, "mask_threshold", DEFAULT_MASK_THRESHOLD,
                                          field=f"{field}.mask_threshold", open_interval=True),
        polygons=prompt.include_polygons,
        category=prompt.category,
    )


def placed_click(click: Click, width: int, height: int) -> Click:
    """The click checked against the decoded image: points on it, the box overlapping it
    (clipped to it)."""
    for name, points in (("points", click.positive), ("points", click.negative)):
        inside = (points >= 0).all(axis=1) & (points[:, 0] <= width) & (points[:, 1] <= height)
        if not inside.all():
            raise InvalidArgument(f"{click.field}.{name}", f"points lie outside the {width}x{height} image")
    if click.box is None:
        return click
    x0, y0, x1, y1 = click.box
    box = fields.box(common_pb2.Box(x_min=x0, y_min=y0, x_max=x1, y_max=y1), f"{click.field}.box", width, height)
    return replace(click, box=box)


def previous_mask(click: Click, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray | None:
    """The click's previous mask as an array of the engine's `shape` and `dtype`, or None;
    one of another shape or size (made for another image, model or setting) is refused."""
    if click.previous is None:
        return None
    field = f"{click.field}.previous_mask"
    got = tuple(int(v) for v in click.previous.shape)
    if got != tuple(shape):
        raise InvalidArgument(f"{field}.shape", f"must be {list(shape)} for this image and model, got {list(got)}")
    expected = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if len(click.previous.data) != expected:
        raise InvalidArgument(f"{field}.data", f"must be {expected} bytes for shape {list(shape)}, "
                                               f"got {len(click.previous.data)}")
    return np.frombuffer(click.previous.data, dtype=dtype).reshape(shape)
