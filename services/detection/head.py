"""Detect: boxes with categories, from a detector (or a face detector) model, run by
the shared request path in services.common.task."""
from __future__ import annotations

from prelabel.core.errors import InvalidArgument
from prelabel.core.review import policy_from_proto
from prelabel.v1 import common_pb2, detection_pb2
from services.common import requests as fields
from services.common.labeling import LabelFilter, select
from services.common.letterbox import boxes_to_source
from services.common.task import Ask, Inference, TaskHead
from services.common.work import WorkBudget
from services.detection.settings import DetectionSettings
from services.modelkit.contract import BOXES, DETECTOR_HEAD, FACE_DETECTOR_HEAD, LABELS, SCORES

TASK = "detect"
MODEL_HEADS = frozenset({DETECTOR_HEAD.name, FACE_DETECTOR_HEAD.name})


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


class DetectHead(TaskHead):
    rpc = "Detect"
    response_type = detection_pb2.DetectResponse
    labels_field = "detections"
    settings: DetectionSettings

    def model_heads(self) -> dict[str, frozenset[str]]:
        return {model: MODEL_HEADS for model in self.settings.models}

    def ask(self, request: detection_pb2.DetectRequest) -> Ask:
        return Ask(model=model_name(request, self.settings), task=TASK,
                   policy=policy_from_proto(request.review_policy), options=label_filter(request))

    def decode(self, inference: Inference, budget: WorkBudget) -> list[common_pb2.Detection]:
        scores = inference.output(SCORES)
        # A face detector has no LABELS: its rows are all category 1 of its label map.
        labels = inference.output(LABELS) if inference.has_output(LABELS) else None
        chosen = select(scores, inference.count, labels, inference.spec.label_map, inference.ask.options)
        boxes = boxes_to_source(inference.output(BOXES)[[c.index for c in chosen]], inference.letterbox)
        return [inference.detection(box, c.category_id, c.category_name, scores[c.index])
                for box, c in zip(boxes, chosen, strict=True)]

    def detection_of(self, label: common_pb2.Detection) -> common_pb2.Detection:
        return label
