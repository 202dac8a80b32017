"""Detect: request -> decode/letterbox -> Triton -> boxes in source pixels."""
from __future__ import annotations


from prelabel.v1 import detection_pb2

from services.common import requests as fields
from services.common.errors import InvalidArgument
from services.common.labeling import (
    LabelFilter,
    count_labels,
    keep_reviewed,
    make_detection,
    select,
    uncertainty_of,
)
from services.common.letterbox import boxes_to_source
from services.common.metrics import Metrics
from services.common.preprocess import prepare_image_async
from services.common.review import policy_from_proto
from services.common.triton_client import TritonClient
from services.detection.settings import DetectionSettings

TASK = "detect"


def label_filter(request: detection_pb2.DetectRequest) -> LabelFilter:
    return LabelFilter(
        score_threshold=fields.probability(request, "score_threshold", fields.DEFAULT_SCORE_THRESHOLD),
        max_labels=fields.max_count(request.max_detections, "max_detections"),
        category_ids=frozenset(request.category_ids),
        category_names=frozenset(request.category_names),
    )


def model_name(request: detection_pb2.DetectRequest, settings: DetectionSettings) -> str:
    model = request.model or settings.default_model
    if model not in settings.models:
        raise InvalidArgument("model", f"unknown model {model!r}; available: {', '.join(settings.models)}")
    return model


async def detect(
    request: detection_pb2.DetectRequest,
    *,
    triton: TritonClient,
    settings: DetectionSettings,
    metrics: Metrics,
    timeout_s: float,
) -> detection_pb2.DetectResponse:
    # Validate everything cheap before touching pixels or Triton.
    model = model_name(request, settings)
    flt = label_filter(request)
    policy = policy_from_proto(request.review_policy)
    image_id = fields.image_id(request.image.image_id)
    spec = await triton.spec(model)

    metrics.payload.labels(metrics.service, "Detect").observe(len(request.image.data))
    with metrics.timed("decode"):
        prepared = await prepare_image_async(request.image.data, spec.image_size, settings)
    with metrics.timed("triton"):
        result = await triton.infer(model, {"IMAGE": prepared.tensor}, timeout_s=timeout_s,
                                    priority=request.priority)
    with metrics.timed("postprocess"):
        out = result.outputs
        scores, labels = out["SCORES"][0], out.get("LABELS")
        count = int(out["COUNT"][0][0])
        chosen = select(scores, count, labels[0] if labels is not None else None, spec.label_map, flt)
        boxes = boxes_to_source(out["BOXES"][0][[i for i, _, _ in chosen]], prepared.letterbox)
        detections = [
            make_detection(box, cat_id, name, scores[i], policy, result.provenance)
            for box, (i, cat_id, name) in zip(boxes, chosen)
        ]
        response = detection_pb2.DetectResponse(
            image_id=image_id,
            image_size=prepared.size_proto,
            detections=keep_reviewed(detections, policy),
            provenance=result.provenance,
            uncertainty=uncertainty_of(detections, policy),
        )
    count_labels(metrics, TASK, model, response.detections)
    return response
