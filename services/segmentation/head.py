"""Segment: instance masks in source pixels, run by the shared request path in
services.common.task.

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

from collections.abc import Sequence
from dataclasses import dataclass

from prelabel.core.errors import InvalidArgument
from prelabel.core.labels import LabelMap, categories, category_name
from prelabel.core.review import ReviewPolicy, policy_from_proto
from prelabel.v1 import common_pb2, segmentation_pb2
from services.common import requests as fields
from services.common.labeling import LabelFilter, select
from services.common.letterbox import boxes_to_source, points_to_source
from services.common.masks import encode_mask
from services.common.prompts import Prompt
from services.common.task import Ask, Inference, TaskHead
from services.common.triton_client import ModelSpec
from services.common.work import WorkBudget
from services.modelkit.contract import (
    BOX_PROMPTS,
    BOXES,
    LABELS,
    MASKS,
    PROMPT_BOXES,
    PROMPT_LABELS,
    PROMPTABLE_MASKS_HEAD,
    SCORES,
)
from services.segmentation.sam_clicks import sam_model_heads
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


def prompt_category(prompt: segmentation_pb2.BoxPrompt, label_map: LabelMap) -> tuple[int, str, int]:
    """(echoed id, echoed name, model channel or 0 for "let the model choose")."""
    cat_id, name = prompt.category.id, prompt.category.name
    known = categories(label_map)
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


class SegmentHead(TaskHead):
    rpc = "Segment"
    response_type = segmentation_pb2.SegmentResponse
    labels_field = "instances"
    prompts_field = "prompts"
    #: The prompt kinds this task reads from its requests.
    prompt_kinds = (BOX_PROMPTS,)
    threaded = True  # pasting and encoding masks costs per pixel
    settings: SegmentationSettings

    def model_heads(self) -> dict[str, frozenset[str]]:
        """The segmenter, and the click model's pair when one is set (waited for, checked
        and warmed up at start-up like the segmenter)."""
        models = {self.settings.segmentation_model: frozenset({PROMPTABLE_MASKS_HEAD.name})}
        if self.settings.click_model:
            models |= sam_model_heads(self.settings.click_model)
        return models

    def ask(self, request: segmentation_pb2.SegmentRequest) -> Ask:
        opts = options(request)
        return Ask(model=self.settings.segmentation_model, task=TASK, policy=opts.policy, options=opts)

    def prompts(self, request: segmentation_pb2.SegmentRequest, ask: Ask, spec: ModelSpec) -> list[Prompt]:
        prompts = []
        for k, prompt in enumerate(request.prompts):
            if not prompt.HasField("box"):
                raise InvalidArgument(f"prompts[{k}].box", "is required")
            # The category asked of the model; 0 lets the model choose.
            channel = prompt_category(prompt, spec.label_map)[2]
            prompts.append(Prompt(f"prompts[{k}].box", {PROMPT_BOXES: prompt.box, PROMPT_LABELS: channel}))
        return prompts

    def check_prompted_work(self, prompts: Sequence[Prompt]) -> None:
        check_mask_pixels([p.rows[PROMPT_BOXES] for p in prompts], self.settings.max_mask_pixels)

    def budget(self, deadline: float) -> WorkBudget:
        return WorkBudget(deadline, self.settings.max_polygon_vertices)

    def decode(self, inference: Inference, budget: WorkBudget) -> list[segmentation_pb2.InstanceMask]:
        if inference.boxes:
            return _prompted(inference, budget)
        return _automatic(inference, self.settings.max_mask_pixels, budget)


def _instance(inf: Inference, probs, paste_box, box, cat_id: int, name: str, score: float | None,
              budget: WorkBudget, prompt_index: int | None = None) -> segmentation_pb2.InstanceMask:
    """One InstanceMask; `score` None means "score = mask quality" (prompted mode)."""
    opts: Options = inf.ask.options
    lb = inf.letterbox
    encoded = encode_mask(probs, paste_box, lb.src_w, lb.src_h, opts.mask_threshold, opts.polygons, budget)
    return segmentation_pb2.InstanceMask(
        detection=inf.detection(box, cat_id, name, encoded.quality if score is None else float(score)),
        mask=common_pb2.RleMask(size=encoded.rle["size"], counts=encoded.rle["counts"]),
        area=encoded.area,
        mask_quality=encoded.quality,
        polygons=[common_pb2.Polygon(points=p) for p in encoded.polygons],
        prompt_index=prompt_index,
    )


def _automatic(inf: Inference, max_mask_pixels: int, budget: WorkBudget) -> list[segmentation_pb2.InstanceMask]:
    """Instances highest score first, until their boxes would cover more than
    `max_mask_pixels` source pixels together."""
    scores = inf.output(SCORES)
    chosen = select(scores, inf.count, inf.output(LABELS), inf.spec.label_map, inf.ask.options.flt)
    instances = []
    pixels_left = max_mask_pixels
    for c in chosen:
        model_box = inf.output(BOXES)[c.index]
        # The mask grid spans the model's box, which may reach into the letterbox
        # padding: paste with the unclipped source box, report the clipped one.
        paste_box = points_to_source(model_box.reshape(2, 2), inf.letterbox).reshape(4)
        box = boxes_to_source(model_box, inf.letterbox)[0]
        pixels_left -= box_pixels(box)
        if pixels_left < 0:
            break
        instances.append(_instance(inf, inf.output(MASKS)[c.index], paste_box, box, c.category_id, c.category_name,
                                   scores[c.index], budget))
    return instances


def _prompted(inf: Inference, budget: WorkBudget) -> list[segmentation_pb2.InstanceMask]:
    instances = []
    for k, (box, prompt) in enumerate(zip(inf.boxes, inf.request.prompts, strict=False)):
        cat_id, name, _ = prompt_category(prompt, inf.spec.label_map)
        if not cat_id and not name:
            cat_id = int(inf.output(LABELS)[k])
            # 0: the model could not name the object in the box -- say so, no "class_0".
            name = category_name(inf.spec.label_map, cat_id) if cat_id else ""
        instances.append(_instance(inf, inf.output(MASKS)[k], box, box, cat_id, name, None, budget,
                                   prompt_index=k))
    return instances
