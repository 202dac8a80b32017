"""The task registry: each kind of draft label the suite produces, declared once.

A task's shape -- its name on the command line and in every output, its `prelabel.v1.Task`
value, the PreLabelResponse field holding its labels, the service that answers it, the kind
of label it yields, its files in the COCO and YOLO outputs, how the quality loop scores it
-- is read from here by the router, the SDK, the output formats and the quality loop, which
iterate `TASKS` rather than naming tasks one by one. Where code must tell labels apart, it
branches on `kind` (a box, a mask, keypoints), not on a task's name.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from google.protobuf.internal.containers import RepeatedCompositeFieldContainer

from prelabel.core.labels import (
    COCO_KEYPOINT_NAMES,
    COCO_KEYPOINT_SIGMAS,
    COCO_SKELETON,
    FACE,
    FACE_LANDMARK_NAMES,
    FACE_LANDMARK_SIGMAS,
    FACE_SKELETON,
    PERSON,
)
from prelabel.v1 import common_pb2, prelabel_pb2


class LabelKind(Enum):
    """What one label of a task is (the message type of its response field)."""

    BOX = "box"  # common_pb2.Detection
    MASK = "mask"  # segmentation_pb2.InstanceMask (a detection and its mask)
    KEYPOINTS = "keypoints"  # keypoints_pb2.KeypointInstance (a detection and its points)


@dataclass(frozen=True)
class KeypointSet:
    """What every instance of a keypoint task is: its one category and its default points
    (a response's KeypointSchema, when it carries one, names the points the model sent)."""

    category: str
    names: tuple[str, ...]
    skeleton: tuple[tuple[int, int], ...]  # edges, 1-based indices into `names` (COCO)
    oks_sigmas: tuple[float, ...]  # COCOeval's kpt_oks_sigmas, one per name


@dataclass(frozen=True)
class TaskSpec:
    name: str  # on the command line, in every output's `task` field
    enum: prelabel_pb2.Task
    response_field: str  # PreLabelResponse field of its labels
    service: str  # the service that answers it (the router's downstream name)
    kind: LabelKind
    coco_file: str  # its COCO file, relative to the COCO output folder
    yolo_kind: str  # its Ultralytics dataset (and that dataset's folder)
    coco_iou_type: str  # COCOeval iouType its drafts are scored by
    cascade_prompted: bool = False  # in cascade mode, prompted with the detector's boxes
    keypoints: KeypointSet | None = None  # keypoint tasks only

    def __post_init__(self) -> None:
        if (self.kind is LabelKind.KEYPOINTS) != (self.keypoints is not None):
            raise ValueError(f"task {self.name}: a keypoint set goes with, and only with, keypoint labels")

    @property
    def category(self) -> str | None:
        """The one category every label of the task has (keypoint tasks), else None."""
        return self.keypoints.category if self.keypoints is not None else None

    def labels(self, response: prelabel_pb2.PreLabelResponse) -> RepeatedCompositeFieldContainer[Any]:
        """The task's labels in a response (its response field)."""
        return getattr(response, self.response_field)

    def detection(self, label) -> common_pb2.Detection:
        """The box, category, score and review of one of the task's labels."""
        return label if self.kind is LabelKind.BOX else label.detection


DETECT = TaskSpec(
    name="detect", enum=prelabel_pb2.TASK_DETECT, response_field="detections", service="detection",
    kind=LabelKind.BOX, coco_file="annotations/instances_detect.json", yolo_kind="detect",
    coco_iou_type="bbox")
SEGMENT = TaskSpec(
    name="segment", enum=prelabel_pb2.TASK_SEGMENT, response_field="masks", service="segmentation",
    kind=LabelKind.MASK, coco_file="annotations/instances_segment.json", yolo_kind="segment",
    coco_iou_type="segm", cascade_prompted=True)
KEYPOINTS = TaskSpec(
    name="keypoints", enum=prelabel_pb2.TASK_KEYPOINTS, response_field="person_keypoints", service="keypoints",
    kind=LabelKind.KEYPOINTS, coco_file="annotations/person_keypoints_keypoints.json", yolo_kind="pose",
    coco_iou_type="keypoints", cascade_prompted=True,
    keypoints=KeypointSet(PERSON, tuple(COCO_KEYPOINT_NAMES), tuple(COCO_SKELETON), COCO_KEYPOINT_SIGMAS))
#: Faces are scored as boxes; their landmarks by OKS on the side (quality.evaluate).
FACES = TaskSpec(
    name="faces", enum=prelabel_pb2.TASK_FACES, response_field="faces", service="keypoints",
    kind=LabelKind.KEYPOINTS, coco_file="annotations/person_keypoints_faces.json", yolo_kind="faces",
    coco_iou_type="bbox",
    keypoints=KeypointSet(FACE, tuple(FACE_LANDMARK_NAMES), tuple(FACE_SKELETON), FACE_LANDMARK_SIGMAS))

#: Every task, in the order of their labels in a response and in every output.
TASKS: tuple[TaskSpec, ...] = (DETECT, SEGMENT, KEYPOINTS, FACES)
TASK_NAMES: tuple[str, ...] = tuple(t.name for t in TASKS)
BY_NAME: dict[str, TaskSpec] = {t.name: t for t in TASKS}
BY_ENUM: dict[int, TaskSpec] = {t.enum: t for t in TASKS}


def by_name(name: str) -> TaskSpec:
    """The task called `name`; KeyError naming the known ones otherwise."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; choose from {', '.join(TASK_NAMES)}") from None


def by_enum(value: int) -> TaskSpec:
    """The task of a `prelabel.v1.Task` value; KeyError otherwise."""
    try:
        return BY_ENUM[value]
    except KeyError:
        raise KeyError(f"unknown task {value}") from None
