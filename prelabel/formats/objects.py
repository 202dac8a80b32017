"""One object, several tasks: a person is a detect box, a segment mask and a keypoints
instance at once. Outputs that a person looks at (the preview, Label Studio) present each
object once, with every task's label of it, instead of two or three overlapping regions.

Grouping, task by task in registry order (detect, segment, keypoints, faces): each label
joins the object of the same category whose first label's box it overlaps most, at box IoU
>= GROUP_MIN_IOU (COCO's matching threshold; a mask's box is its tight bounding box, often
a little inside the detector's), one label per task and object, best overlaps first;
a label that joins none starts an object of its own (faces always do: no other task
labels faces). Train-ready formats (COCO, YOLO) keep one annotation per task label.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from prelabel.core.geometry import proto_box_iou
from prelabel.core.tasks import TASKS, LabelKind
from prelabel.formats.common import Label

GROUP_MIN_IOU = 0.5


@dataclass(frozen=True)
class LabelledObject:
    """Every task's label of one object, in registry order; the first is the anchor
    (the detect box when there is one)."""

    labels: tuple[Label, ...]

    @property
    def anchor(self) -> Label:
        return self.labels[0]

    @property
    def category(self) -> str:
        return self.anchor.category

    def of_kind(self, kind: LabelKind) -> Label | None:
        return next((label for label in self.labels if label.kind is kind), None)


def group_objects(labels: Iterable[Label], min_iou: float = GROUP_MIN_IOU) -> list[LabelledObject]:
    """Labels of one image (formats.common.iter_labels, or the subset an output takes)
    grouped into objects (see the module docstring), in the order their anchors come."""
    by_task: dict[str, list[Label]] = {t.name: [] for t in TASKS}
    for label in labels:
        by_task[label.task.name].append(label)
    groups: list[list[Label]] = []
    for task in TASKS:
        of_task = by_task[task.name]
        candidates = sorted(
            ((proto_box_iou(group[0].detection.box, label.detection.box), i, g)
             for i, label in enumerate(of_task) for g, group in enumerate(groups)
             if group[0].category == label.category),
            key=lambda c: -c[0])
        placed: set[int] = set()
        filled: set[int] = set()
        for iou, i, g in candidates:
            if iou < min_iou:
                break
            if i not in placed and g not in filled:
                groups[g].append(of_task[i])
                placed.add(i)
                filled.add(g)
        groups.extend([label] for i, label in enumerate(of_task) if i not in placed)
    return [LabelledObject(tuple(group)) for group in groups]
