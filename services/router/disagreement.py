"""Image-level disagreement between the router's independently run tasks: an
active-learning signal that needs no extra inference. Where two models looking at the
same image disagree about what is there, at least one of them is wrong, whatever
their scores say.

Compared pairs (labels of the same category): detection boxes against the boxes of
the automatic masks, and detected persons against the keypoint model's persons. Each
label of a compared pair with no counterpart of IoU >= MATCH_IOU on the other side
disagrees; the score is disagreeing labels / compared labels, in [0, 1]. Tasks the
router prompted with the detector's boxes (cascade) agree by construction and are not
compared; with fewer than two independent tasks the score is 0.
"""
from __future__ import annotations

from collections.abc import Sequence

from prelabel.v1 import common_pb2, prelabel_pb2

MATCH_IOU = 0.5
PERSON = "person"


def _iou(a: common_pb2.Box, b: common_pb2.Box) -> float:
    ix = max(0.0, min(a.x_max, b.x_max) - max(a.x_min, b.x_min))
    iy = max(0.0, min(a.y_max, b.y_max) - max(a.y_min, b.y_min))
    inter = ix * iy
    union = (a.x_max - a.x_min) * (a.y_max - a.y_min) + (b.x_max - b.x_min) * (b.y_max - b.y_min) - inter
    return inter / union if union > 0 else 0.0


def _unmatched(side: Sequence[common_pb2.Detection], other: Sequence[common_pb2.Detection]) -> int:
    """Labels of `side` with no same-category label of IoU >= MATCH_IOU in `other`."""
    return sum(
        not any(o.category.name == d.category.name and _iou(d.box, o.box) >= MATCH_IOU for o in other)
        for d in side)


def pair_disagreement(a: Sequence[common_pb2.Detection], b: Sequence[common_pb2.Detection]) -> tuple[int, int]:
    """(disagreeing labels, compared labels) between two tasks' labels."""
    return _unmatched(a, b) + _unmatched(b, a), len(a) + len(b)


def disagreement(response: prelabel_pb2.PreLabelResponse, succeeded: set[int], cascade: bool) -> float:
    """Disagreement of a merged response; `succeeded`: the tasks that returned labels,
    `cascade`: whether segmentation and keypoints were prompted by the detector."""
    independent_tasks = succeeded - ({prelabel_pb2.TASK_SEGMENT, prelabel_pb2.TASK_KEYPOINTS} if cascade else set())
    detect = list(response.detections) if prelabel_pb2.TASK_DETECT in independent_tasks else None
    pairs = []
    if detect is not None and prelabel_pb2.TASK_SEGMENT in independent_tasks:
        pairs.append((detect, [m.detection for m in response.masks]))
    if detect is not None and prelabel_pb2.TASK_KEYPOINTS in independent_tasks:
        pairs.append(([d for d in detect if d.category.name == PERSON],
                      [k.detection for k in response.person_keypoints]))
    bad = total = 0
    for a, b in pairs:
        n_bad, n = pair_disagreement(a, b)
        bad, total = bad + n_bad, total + n
    return bad / total if total else 0.0
