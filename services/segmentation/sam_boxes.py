"""Prompted Segment answered by the SAM click pair (click_model set, sam_box_prompts on): each
prompt box is a box-only prompt to SAM's decoder, on the image embedding the clicks use
(held in the same per-image state), so the router's cascade (detect -> segment) gives SAM's
masks of the detector's boxes: "Grounded SAM" without text. Automatic mode (no prompts)
stays with the segmentation model: SAM does not name objects.

The prompted-mode rules of services.segmentation.head hold: one mask per prompt, in prompt
order, never dropped; the instance's box is the prompt box clipped to the image; its score
the mask quality (SAM's predicted IoU, clipped to [0, 1]); its category the caller's as
given (SAM has no classifier: a prompt without one gets none). The decoder is called once
per prompt, all at once under the call's deadline (Triton batches them when the decoder's
config allows)."""
from __future__ import annotations

import asyncio

import numpy as np

from prelabel.core.errors import InvalidArgument
from prelabel.v1 import common_pb2, segmentation_pb2
from services.common import requests as fields
from services.common.labeling import count_labels, uncertainty_of
from services.common.metrics import Metrics
from services.common.prompts import check_box_shape
from services.common.work import WorkBudget, run_bounded
from services.segmentation.clicks import Click, placed_click
from services.segmentation.head import TASK, check_mask_pixels, options
from services.segmentation.sam_clicks import DecoderAnswer, SamClicks, SamImage
from services.segmentation.settings import SegmentationSettings

NO_POINTS = np.zeros((0, 2))


def box_clicks(request: segmentation_pb2.SegmentRequest, settings: SegmentationSettings) -> list[Click]:
    """The prompts as box-only click prompts, checked before the image is decoded."""
    if len(request.prompts) > settings.max_prompts:
        raise InvalidArgument("prompts", f"at most {settings.max_prompts} prompts per request, "
                                         f"got {len(request.prompts)}")
    opts = options(request)
    clicks = []
    for k, prompt in enumerate(request.prompts):
        field = f"prompts[{k}].box"
        if not prompt.HasField("box"):
            raise InvalidArgument(field, "is required")
        check_box_shape(prompt.box, field)
        b = prompt.box
        clicks.append(Click(field=f"prompts[{k}]", positive=NO_POINTS, negative=NO_POINTS,
                            box=(b.x_min, b.y_min, b.x_max, b.y_max), previous=None, multimask=False,
                            mask_threshold=opts.mask_threshold, polygons=opts.polygons, category=prompt.category))
    return clicks


def instances(engine: SamClicks, image: SamImage, clicks: list[Click], answers: list[DecoderAnswer], policy,
              budget: WorkBudget) -> list[segmentation_pb2.InstanceMask]:
    """One instance per prompt (worker thread): SAM's one mask for the box, boxed by the prompt."""
    out = []
    for k, (click, answer) in enumerate(zip(clicks, answers, strict=True)):
        [candidate] = engine.candidates(image, click, answer, policy, budget)
        instance = candidate.instance
        assert click.box is not None
        x0, y0, x1, y1 = click.box
        instance.detection.box.CopyFrom(common_pb2.Box(x_min=x0, y_min=y0, x_max=x1, y_max=y1))
        instance.prompt_index = k
        out.append(instance)
    return out


async def segment_boxes(  # called with at least one prompt (none: automatic mode, the segmenter's)
engine: SamClicks, request: segmentation_pb2.SegmentRequest, settings: SegmentationSettings,
                        metrics: Metrics, deadline: float) -> segmentation_pb2.SegmentResponse:
    opts = options(request)
    image_id = fields.image_id(request.image.image_id)
    clicks = box_clicks(request, settings)
    metrics.payload.labels(metrics.service, "Segment").observe(len(request.image.data))
    with metrics.timed("decode"):
        prepared = await engine.prepare(request.image.data, deadline, request.priority)
    image = prepared.image
    clicks = [placed_click(c, image.width, image.height) for c in clicks]
    check_mask_pixels([c.box for c in clicks], settings.max_mask_pixels)
    with metrics.timed("triton"):
        calls = [asyncio.ensure_future(engine.decode(image, c, None, deadline, request.priority)) for c in clicks]
        try:
            answers = list(await asyncio.gather(*calls))
        finally:
            for call in calls:  # one failed: the others' answers are of no use
                call.cancel()
    with metrics.timed("postprocess"):
        budget = WorkBudget(deadline, settings.max_polygon_vertices)
        found = await run_bounded(instances, engine, image, clicks, answers, opts.policy, budget=budget)
    detections = [i.detection for i in found]
    count_labels(metrics, TASK, engine.decoder, detections)
    return segmentation_pb2.SegmentResponse(
        image_id=image_id, image_size=common_pb2.ImageSize(width=image.width, height=image.height),
        instances=found, provenance=answers[0].provenance, uncertainty=uncertainty_of(detections, opts.policy))
