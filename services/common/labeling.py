"""Turn padded model outputs into draft labels: threshold, class filter, top-k,
review decision, provenance. Shared by every service."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from prelabel.core.labels import LabelMap, category_name
from prelabel.core.review import ReviewPolicy, decision_name, image_uncertainty
from prelabel.v1 import common_pb2
from services.common.metrics import Metrics


@dataclass(frozen=True)
class LabelFilter:
    score_threshold: float
    max_labels: int
    category_ids: frozenset[int] = field(default_factory=frozenset)
    category_names: frozenset[str] = field(default_factory=frozenset)

    def wants(self, cat_id: int, cat_name: str) -> bool:
        if not self.category_ids and not self.category_names:
            return True
        return cat_id in self.category_ids or cat_name in self.category_names


@dataclass(frozen=True)
class Selected:
    """A row of the model's padded outputs to return as a label."""

    index: int
    category_id: int
    category_name: str


def select(scores: np.ndarray, count: int, label_ids: np.ndarray | None, label_map: LabelMap,
           flt: LabelFilter) -> list[Selected]:
    """The rows to return, highest score first (without `label_ids`, every row is
    category 1 of the label map)."""
    chosen: list[Selected] = []
    for i in np.argsort(-scores[:count], kind="stable"):
        i = int(i)
        if scores[i] < flt.score_threshold:
            break
        cat_id = int(label_ids[i]) if label_ids is not None else 1
        name = category_name(label_map, cat_id)
        if flt.wants(cat_id, name):
            chosen.append(Selected(i, cat_id, name))
            if len(chosen) >= flt.max_labels:
                break
    return chosen


def make_detection(box, cat_id: int, cat_name: str, score: float, policy: ReviewPolicy,
                   provenance: common_pb2.Provenance) -> common_pb2.Detection:
    x0, y0, x1, y1 = (float(v) for v in box)
    return common_pb2.Detection(
        box=common_pb2.Box(x_min=x0, y_min=y0, x_max=x1, y_max=y1),
        category=common_pb2.Category(id=cat_id, name=cat_name),
        score=float(score),
        review=policy.band(cat_name).decide(float(score)),
        provenance=provenance,
    )


def keep_reviewed(items: list, policy: ReviewPolicy, detection_of=lambda item: item) -> list:
    """Drop rejected labels unless the caller asked to see them."""
    if policy.include_rejected:
        return items
    return [x for x in items if detection_of(x).review != common_pb2.REVIEW_DECISION_REJECT]


def uncertainty_of(detections, policy: ReviewPolicy) -> common_pb2.ImageUncertainty:
    return image_uncertainty(((d.score, policy.band(d.category.name)) for d in detections),
                             policy.id).to_proto()


def count_labels(metrics: Metrics, task: str, model: str, detections) -> None:
    """Record one labelled image and its labels by review decision."""
    metrics.images.labels(metrics.service, task).inc()
    for d in detections:
        metrics.labels.labels(metrics.service, task, model, decision_name(d.review)).inc()
