"""Prompts on their way to a model, whatever their kind.

A task reads the prompt kinds it understands (services.modelkit.contract.PROMPT_KINDS;
boxes today) from its request into `Prompt`s: one per object the caller points at, with
a row of each prompt tensor the request fills for it. Everything after that goes
through the contract's declarations, not through a kind's name: whether the model takes
the kind, checks of the geometry before and after the image is decoded, the mapping
into model-input pixels, fixed-shape tensors padded with each tensor's pad value, and
the split of a request's prompts into inferences of at most the model's prompt rows
(whose answers are joined back in prompt order).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from prelabel.core.errors import InvalidArgument
from services.common import requests as fields
from services.common.letterbox import Letterbox, points_to_model
from services.common.triton_client import InferOutput, ModelSpec
from services.modelkit.contract import BOX, COUNT, POINTS, PROMPT_COUNT, Head, PromptKind, TensorSpec, kind_of


@dataclass(frozen=True)
class Prompt:
    """One object the caller points at. `rows` holds its row of each prompt tensor the
    request fills: as read from the request (a `common_pb2.Box` for a box, (x, y) pairs
    for points, in source pixels), then, once `placed` on the image, as numbers
    (geometry clipped to the image, still in source pixels)."""

    field: str  # names it in errors, e.g. "prompts[2].box"
    rows: Mapping[TensorSpec, Any]

    @property
    def kinds(self) -> frozenset[PromptKind]:
        return frozenset(kind_of(t) for t in self.rows)


def check_prompts(prompts: Sequence[Prompt], spec: ModelSpec, field: str, limit: int) -> None:
    """Everything about the prompts that needs no image: the model takes their kinds, at
    most `limit` per request (more than the model's rows are split over several
    inferences), finite and ordered geometry."""
    if not prompts:
        return
    taken = set(spec.contract_head.prompts)
    for kind in sorted({k for p in prompts for k in p.kinds}, key=lambda k: k.name):
        if kind not in taken:
            raise InvalidArgument(field, f"model {spec.name} takes no prompt {kind.name}")
    if len(prompts) > limit:
        raise InvalidArgument(field, f"at most {limit} prompts per request, got {len(prompts)}")
    for p in prompts:
        for tensor, value in p.rows.items():
            _check_shape(tensor, value, p.field)


def check_box_shape(pb, field: str) -> None:
    """Finite corners with x_min < x_max and y_min < y_max, checked before the image
    is decoded (`requests.box` then checks the box against the image and clips it)."""
    values = (pb.x_min, pb.y_min, pb.x_max, pb.y_max)
    if not all(math.isfinite(v) for v in values):
        raise InvalidArgument(field, "coordinates must be finite")
    if pb.x_max <= pb.x_min or pb.y_max <= pb.y_min:
        raise InvalidArgument(field, f"needs x_min < x_max and y_min < y_max, got {values}")


def _check_shape(tensor: TensorSpec, value, field: str) -> None:
    if tensor.geometry == BOX:
        check_box_shape(value, field)
    elif tensor.geometry == POINTS and not np.isfinite(np.asarray(value, np.float64)).all():
        raise InvalidArgument(field, "coordinates must be finite")


def placed(prompt: Prompt, width: int, height: int) -> Prompt:
    """The prompt checked against the decoded image: a box must overlap it (and is
    clipped to it), points must lie on it."""
    rows = {}
    for tensor, value in prompt.rows.items():
        if tensor.geometry == BOX:
            value = np.asarray(fields.box(value, prompt.field, width, height), np.float64)
        elif tensor.geometry == POINTS:
            value = np.asarray(value, np.float64).reshape(-1, 2)
            inside = (value >= 0).all(axis=1) & (value[:, 0] <= width) & (value[:, 1] <= height)
            if not inside.all():
                raise InvalidArgument(prompt.field, f"points lie outside the {width}x{height} image")
        rows[tensor] = value
    return replace(prompt, rows=rows)


def to_model(prompt: Prompt, lb: Letterbox) -> Prompt:
    """A placed prompt with its geometry in model-input pixels."""
    return replace(prompt, rows={
        tensor: points_to_model(np.reshape(value, (-1, 2)), lb).reshape(np.shape(value)) if tensor.geometry else value
        for tensor, value in prompt.rows.items()
    })


def prompt_tensors(prompts: Sequence[Prompt], spec: ModelSpec) -> dict[str, np.ndarray]:
    """Fixed-shape prompt inputs of one inference (batch of one): every prompt tensor the
    model takes, one row per prompt (model-input pixels) and the rest `pad`, and
    PROMPT_COUNT. No prompts selects the model's automatic mode."""
    capacity = spec.prompt_capacity
    if len(prompts) > capacity:
        raise ValueError(f"{len(prompts)} prompts do not fit {spec.name}'s {capacity} rows; split them")
    tensors = {PROMPT_COUNT.name: np.array([[len(prompts)]], dtype=np.int32)}
    for tensor in spec.contract_head.prompt_inputs():
        out = np.full((1, *spec.inputs[tensor.name]), tensor.pad, dtype=tensor.numpy_dtype)
        for k, prompt in enumerate(prompts):
            if tensor in prompt.rows:
                row = np.asarray(prompt.rows[tensor], dtype=tensor.numpy_dtype)
                out[(0, k, *(slice(0, n) for n in row.shape))] = row  # a short row keeps the pad after it
        tensors[tensor.name] = out
    return tensors


def split(prompts: Sequence[Prompt], capacity: int) -> list[Sequence[Prompt]]:
    """Consecutive groups of at most `capacity` prompts; one empty group for none (the
    automatic mode is one inference too)."""
    return [prompts[i:i + capacity] for i in range(0, len(prompts), capacity)] or [prompts]


def joined(results: Sequence[InferOutput], sizes: Sequence[int], head: Head) -> InferOutput:
    """The answers of consecutive prompt groups as one: each row output holds the first
    `size` rows of each group's answer (row k answers prompt k), COUNT their sum."""
    if len(results) == 1:
        return results[0]
    outputs = dict(results[0].outputs)
    for tensor in head.row_outputs():
        outputs[tensor.name] = np.concatenate(
            [r.outputs[tensor.name][0][:n] for r, n in zip(results, sizes, strict=True)])[None]
    counts = [min(int(r.outputs[COUNT.name][0][0]), n) for r, n in zip(results, sizes, strict=True)]
    outputs[COUNT.name] = np.array([[sum(counts)]], dtype=np.int32)
    return replace(results[0], outputs=outputs)
