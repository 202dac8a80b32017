"""Image-level disagreement between the router's independently run tasks: an
active-learning signal that needs no extra inference. Where two models looking at the
same image disagree about what is there, at least one of them is wrong, whatever
their scores say.

Compared pairs (labels of the same category): the detector's boxes against the labels of
each task that cascade mode can prompt with them (they label the same objects): the
boxes of the automatic masks, and -- for a task of one category -- the detected persons
against the keypoint model's persons. Each label of a compared pair with no counterpart
of IoU >= MATCH_IOU on the other side disagrees; the score is disagreeing labels /
compared labels, in [0, 1]. Tasks the router prompted with the detector's boxes (cascade)
agree by construction and are not compared; with fewer than two independent tasks the
score is 0.
"""
from __future__ import annotations

from collections.abc import Collection, Sequence

from prelabel.core.geometry import proto_box_iou
from prelabel.core.tasks import DETECT, TASKS, TaskSpec
from prelabel.v1 import common_pb2, prelabel_pb2

MATCH_IOU = 0.5


def _unmatched(side: Sequence[common_pb2.Detection], other: Sequence[common_pb2.Detection]) -> int:
    """Labels of `side` with no same-category label of IoU >= MATCH_IOU in `other`."""
    return sum(
        not any(o.category.name == d.category.name and proto_box_iou(d.box, o.box) >= MATCH_IOU for o in other)
        for d in side)


def pair_disagreement(a: Sequence[common_pb2.Detection], b: Sequence[common_pb2.Detection]) -> tuple[int, int]:
    """(disagreeing labels, compared labels) between two tasks' labels."""
    return _unmatched(a, b) + _unmatched(b, a), len(a) + len(b)


def disagreement(response: prelabel_pb2.PreLabelResponse, succeeded: Collection[TaskSpec], cascade: bool) -> float:
    """Disagreement of a merged response; `succeeded`: the tasks that returned labels,
    `cascade`: whether the cascade-prompted tasks were prompted by the detector."""
    independent = [t for t in TASKS if t in succeeded and not (cascade and t.cascade_prompted)]
    if DETECT not in independent:
        return 0.0
    detected = DETECT.labels(response)
    bad = total = 0
    for task in independent:
        if task is DETECT or not task.cascade_prompted:
            continue
        mine = [d for d in detected if task.category is None or d.category.name == task.category]
        n_bad, n = pair_disagreement(mine, [task.detection(label) for label in task.labels(response)])
        bad, total = bad + n_bad, total + n
    return bad / total if total else 0.0
