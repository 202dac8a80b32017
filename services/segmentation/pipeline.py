"""Segment: request -> decode/letterbox -> Triton -> masks pasted in source pixels.

Automatic mode: the model's own instances (score threshold, category filter, top-k,
review routing; rejected instances dropped unless asked for).

Prompted mode: exactly one mask per prompt box, in prompt order, never dropped (the
review decision still says what a human should do with it); the automatic-mode
filters (score_threshold, category filters, max_instances) do not apply. The instance's box is
the prompt box clipped to the image, its score the mask quality, and its category
the caller's when given (id and/or name, completed from the model's label map when
it knows them), else the category the model's box classifier finds most probable on
that box. The mask channel is the caller's category when the model knows it, else
that most probable category.

Work bounds (settings): the masks of one request cover at most `max_mask_pixels` source
pixels (prompts over it are refused before inference; automatic mode stops adding
instances there) and at most `max_polygon_vertices` polygon vertices. Pasting runs in a
worker thread that stops at the call's deadline or cancellation (services.common.work).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from prelabel.v1 import common_pb2, segmentation_pb2

from services.common import requests as fields
from services.common.errors import InvalidArgument
from services.common.labeling import (
    LabelFilter,
    check_prompt_box_shape,
    check_prompt_count,
    count_labels,
    keep_reviewed,
    make_detection,
    prompt_tensors,
    select,
    uncertainty_of,
)
from services.common.labels import LABEL_MAPS, category_name
from services.common.letterbox import Letterbox, boxes_to_model, boxes_to_source, points_to_source
from services.common.masks import encode_mask
from services.common.metrics import Metrics
from services.common.preprocess import prepare_image_async
from services.common.review import ReviewPolicy, policy_from_proto
from services.common.triton_client import InferOutput, ModelSpec, TritonClient
from services.common.work import WorkBudget, run_bounded
from services.segmentation.settings import SegmentationSettings

TASK = "segment"
DEFAULT_MASK_THRESHOLD = 0.5


@dataclass(frozen=True)
class Options:
    flt: LabelFilter
    mask_threshold: float
    polygons: bool
    policy: ReviewPolicy


def options(request: segmentation_pb2.SegmentRequest) -> Options:
    return Options(
        flt=LabelFilter(
            score_threshold=fields.probability(request, "score_threshold", fields.DEFAULT_SCORE_THRESHOLD),
            max_labels=fields.max_count(request.max_instances, "max_instances"),
            category_ids=frozenset(request.category_ids),
            category_names=frozenset(request.category_names),
        ),
        mask_threshold=fields.probability(request, "mask_threshold", DEFAULT_MASK_THRESHOLD,
                                          open_interval=True),
        polygons=request.include_polygons,
        policy=policy_from_proto(request.review_policy),
    )


def max_prompts(spec: ModelSpec) -> int:
    return spec.inputs["PROMPT_BOXES"][0]


def check_prompts(request: segmentation_pb2.SegmentRequest, spec: ModelSpec) -> None:
    """Everything about the prompts that needs no image."""
    check_prompt_count(len(request.prompts), max_prompts(spec), "prompts")
    for k, prompt in enumerate(request.prompts):
        if not prompt.HasField("box"):
            raise InvalidArgument(f"prompts[{k}].box", "is required")
        check_prompt_box_shape(prompt.box, f"prompts[{k}].box")


def prompt_category(prompt: segmentation_pb2.BoxPrompt, label_map: str) -> tuple[int, str, int]:
    """(echoed id, echoed name, model channel or 0 for "let the model choose")."""
    cat_id, name = prompt.category.id, prompt.category.name
    known = LABEL_MAPS.get(label_map, {})
    if cat_id in known:
        return cat_id, name or known[cat_id], cat_id
    if cat_id == 0 and name:
        by_name = next((i for i, n in known.items() if n == name), 0)
        return by_name, name, by_name
    return cat_id, name, 0


def box_pixels(box) -> int:
    x0, y0, x1, y1 = box
    return max(0, round(x1 - x0)) * max(0, round(y1 - y0))


def check_mask_pixels(boxes, limit: int) -> None:
    """Prompted work is known before inference: refuse it when it is over the bound."""
    total = sum(box_pixels(b) for b in boxes)
    if total > limit:
        raise InvalidArgument("prompts", f"the prompt boxes cover {total} pixels together; "
                                         f"the limit is {limit} per request")


async def segment(
    request: segmentation_pb2.SegmentRequest,
    *,
    triton: TritonClient,
    settings: SegmentationSettings,
    metrics: Metrics,
    timeout_s: float,
) -> segmentation_pb2.SegmentResponse:
    deadline = time.monotonic() + timeout_s
    # Validate everything cheap before touching pixels or Triton.
    model = settings.segmentation_model
    opts = options(request)
    image_id = fields.image_id(request.image.image_id)
    spec = await triton.spec(model)
    check_prompts(request, spec)

    metrics.payload.labels(metrics.service, "Segment").observe(len(request.image.data))
    with metrics.timed("decode"):
        prepared = await prepare_image_async(request.image.data, spec.image_size, settings)
    width, height = prepared.decoded.width, prepared.decoded.height
    boxes = [fields.box(p.box, f"prompts[{k}].box", width, height) for k, p in enumerate(request.prompts)]
    check_mask_pixels(boxes, settings.max_mask_pixels)
    categories = [prompt_category(p, spec.label_map) for p in request.prompts]
    inputs = {"IMAGE": prepared.tensor}
    inputs.update(prompt_tensors(boxes_to_model(np.asarray(boxes).reshape(-1, 4), prepared.letterbox),
                                 max_prompts(spec),
                                 labels=[c[2] for c in categories] if "PROMPT_LABELS" in spec.inputs else None))
    with metrics.timed("triton"):
        result = await triton.infer(model, inputs, timeout_s=timeout_s, priority=request.priority)
    budget = WorkBudget(deadline, settings.max_polygon_vertices)
    with metrics.timed("postprocess"):
        if boxes:
            instances = await run_bounded(
                _prompted, result, boxes, categories, spec.label_map, prepared.letterbox, opts, budget=budget)
            kept = instances
        else:
            instances = await run_bounded(_automatic, result, spec.label_map, prepared.letterbox, opts,
                                          settings.max_mask_pixels, budget=budget)
            kept = keep_reviewed(instances, opts.policy, detection_of=lambda m: m.detection)
        detections = [m.detection for m in instances]
        response = segmentation_pb2.SegmentResponse(
            image_id=image_id,
            image_size=prepared.size_proto,
            instances=kept,
            provenance=result.provenance,
            uncertainty=uncertainty_of(detections, opts.policy),
        )
    count_labels(metrics, TASK, model, [m.detection for m in response.instances])
    return response


def _instance(probs, paste_box, box, cat_id: int, name: str, score: float | None, lb: Letterbox,
              opts: Options, provenance, budget: WorkBudget, prompt_index: int | None = None):
    """One InstanceMask; `score` None means "score = mask quality" (prompted mode)."""
    encoded = encode_mask(probs, paste_box, lb.src_w, lb.src_h, opts.mask_threshold, opts.polygons, budget)
    return segmentation_pb2.InstanceMask(
        detection=make_detection(box, cat_id, name, encoded.quality if score is None else float(score),
                                 opts.policy, provenance),
        mask=common_pb2.RleMask(size=encoded.rle["size"], counts=encoded.rle["counts"]),
        area=encoded.area,
        mask_quality=encoded.quality,
        polygons=[common_pb2.Polygon(points=p) for p in encoded.polygons],
        prompt_index=prompt_index,
    )


def _automatic(result: InferOutput, label_map: str, lb: Letterbox, opts: Options, max_mask_pixels: int,
               budget: WorkBudget):
    """Instances highest score first, until their boxes would cover more than
    `max_mask_pixels` source pixels together."""
    out = result.outputs
    scores = out["SCORES"][0]
    count = int(out["COUNT"][0][0])
    chosen = select(scores, count, out["LABELS"][0], label_map, opts.flt)
    instances = []
    pixels_left = max_mask_pixels
    for i, cat_id, name in chosen:
        model_box = out["BOXES"][0][i]
        # The mask grid spans the model's box, which may reach into the letterbox
        # padding: paste with the unclipped source box, report the clipped one.
        paste_box = points_to_source(model_box.reshape(2, 2), lb).reshape(4)
        box = boxes_to_source(model_box, lb)[0]
        pixels_left -= box_pixels(box)
        if pixels_left < 0:
            break
        instances.append(_instance(out["MASKS"][0][i], paste_box, box, cat_id, name, scores[i], lb,
                                   opts, result.provenance, budget))
    return instances


def _prompted(result: InferOutput, boxes, categories, label_map: str, lb: Letterbox, opts: Options,
              budget: WorkBudget):
    out = result.outputs
    instances = []
    for k, (box, (cat_id, name, _)) in enumerate(zip(boxes, categories)):
        if not cat_id and not name:
            cat_id = int(out["LABELS"][0][k])
            # 0: the model could not name the object in the box -- say so, no "class_0".
            name = category_name(label_map, cat_id) if cat_id else ""
        instances.append(_instance(out["MASKS"][0][k], box, box, cat_id, name, None, lb, opts,
                                   result.provenance, budget, prompt_index=k))
    return instances
