"""What every output format shares: walking a response's labels, fixed category ids, and
the writer interface."""
from __future__ import annotations

import os
import posixpath
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from prelabel.core.labels import (
    COCO_CATEGORIES,
    COCO_KEYPOINT_NAMES,
    COCO_SKELETON,
    FACE_LANDMARK_NAMES,
)
from prelabel.sdk import REVIEW_NAMES
from prelabel.v1 import common_pb2, keypoints_pb2, prelabel_pb2, segmentation_pb2

#: Task names as on the command line and in every output's `task` field.
TASK_DETECT, TASK_SEGMENT, TASK_KEYPOINTS, TASK_FACES = "detect", "segment", "keypoints", "faces"

# Fixed category ids, identical in every shard so shard outputs merge without remapping:
# COCO names keep their COCO ids (1..90), "face" gets 91 (unused by COCO), any other name
# a stable id from its CRC-32 above 1000.
FACE_NAME = "face"
FACE_COCO_ID = 91
COCO_ID_BY_NAME = {name: cid for cid, name in COCO_CATEGORIES.items()}
#: Contiguous class order for YOLO: the 80 COCO classes in COCO id order (the usual
#: "coco80" numbering, 0 = person), then face.
FIXED_NAMES: list[str] = [COCO_CATEGORIES[cid] for cid in sorted(COCO_CATEGORIES)] + [FACE_NAME]

PERSON_NAME = "person"
#: Keypoint names and 1-based skeleton used when a response carries no schema.
DEFAULT_PERSON_KEYPOINTS = list(COCO_KEYPOINT_NAMES)
DEFAULT_PERSON_SKELETON = [i for edge in COCO_SKELETON for i in edge]
DEFAULT_FACE_KEYPOINTS = list(FACE_LANDMARK_NAMES)
#: The category every instance of a keypoint task is labelled with, and its default
#: keypoint names.
KEYPOINT_CATEGORY = {TASK_KEYPOINTS: PERSON_NAME, TASK_FACES: FACE_NAME}
DEFAULT_KEYPOINTS = {TASK_KEYPOINTS: DEFAULT_PERSON_KEYPOINTS, TASK_FACES: DEFAULT_FACE_KEYPOINTS}
#: The box categories of detect and segment: every fixed name but "face", which only the
#: faces task labels.
OBJECT_NAMES = [n for n in FIXED_NAMES if n != FACE_NAME]


def image_root_of(image_ids: Iterable[str]) -> str:
    """The deepest folder holding every image id (all inputs of a run, not one shard, so
    every shard names an image alike); "" when the ids share none or mix absolute and
    relative paths."""
    dirs = {posixpath.dirname(i.replace("\\", "/")) for i in image_ids}
    if not dirs or len({d.startswith("/") for d in dirs}) > 1:
        return ""
    root = posixpath.commonpath(list(dirs)) if len(dirs) > 1 else dirs.pop()
    return "" if root in ("/", ".") else root


def relative_name(image_id: str, image_root: str = "") -> str:
    """An image's name in every output (COCO `file_name`, Label Studio `?d=`, the YOLO
    `images/` tree): its id relative to the image root, POSIX, never climbing out
    (`..` becomes `__`, a leading `/` is dropped)."""
    path = image_id.replace("\\", "/")
    root = image_root.replace("\\", "/").rstrip("/")
    if root and path.startswith(root + "/"):
        path = path[len(root) + 1:]
    parts = [("__" if p == ".." else p) for p in path.split("/") if p not in ("", ".")]
    return "/".join(parts) or "_"


def image_root_dir(image_root: str, image_id: str) -> str:
    """The absolute folder that relative_name(image_id, image_root) is relative to."""
    if image_root:
        return os.path.abspath(image_root)
    return "/" if image_id.replace("\\", "/").startswith("/") else os.getcwd()


def coco_category_id(name: str) -> int:
    if name in COCO_ID_BY_NAME:
        return COCO_ID_BY_NAME[name]
    if name == FACE_NAME:
        return FACE_COCO_ID
    return 1000 + zlib.crc32(name.encode("utf-8")) % 1_000_000


@dataclass(frozen=True)
class Label:
    """One draft label of an image, whatever task produced it."""

    task: str
    index: int  # position in its task's list in the response
    detection: common_pb2.Detection
    mask: segmentation_pb2.InstanceMask | None = None
    keypoints: keypoints_pb2.KeypointInstance | None = None

    @property
    def category(self) -> str:
        return self.detection.category.name or f"class_{self.detection.category.id}"

    @property
    def review(self) -> str:
        return REVIEW_NAMES.get(self.detection.review, "unspecified")

    @property
    def needs_review(self) -> bool:
        return self.detection.review == common_pb2.REVIEW_DECISION_NEEDS_REVIEW


def iter_labels(response: prelabel_pb2.PreLabelResponse) -> Iterator[Label]:
    """Every label of a response: detections, masks, person keypoints, faces, in that order."""
    for i, det in enumerate(response.detections):
        yield Label(TASK_DETECT, i, det)
    for i, inst in enumerate(response.masks):
        yield Label(TASK_SEGMENT, i, inst.detection, mask=inst)
    for i, inst in enumerate(response.person_keypoints):
        yield Label(TASK_KEYPOINTS, i, inst.detection, keypoints=inst)
    for i, inst in enumerate(response.faces):
        yield Label(TASK_FACES, i, inst.detection, keypoints=inst)


def model_tag(provenance: common_pb2.Provenance) -> str:
    """"model@version", plus "(random weights)" when the labels are meaningless."""
    tag = f"{provenance.model_name or 'unknown'}@{provenance.model_version or '?'}"
    if provenance.weights == common_pb2.WEIGHTS_RANDOM:
        tag += " (random weights)"
    return tag


def xywh(box: common_pb2.Box) -> list[float]:
    """COCO bbox [x, y, width, height] in pixels."""
    return [box.x_min, box.y_min, box.x_max - box.x_min, box.y_max - box.y_min]


def schema_for(response: prelabel_pb2.PreLabelResponse, names: list[str]) -> common_pb2.KeypointSchema | None:
    """The keypoint schema of the response whose names are `names`, if any."""
    for schema in response.keypoint_schemas:
        if list(schema.keypoint_names) == names:
            return schema
    return None


class OutputWriter(Protocol):
    """An output format fed one finished image at a time (input order), then closed.
    `close` makes the output appear atomically; `abort` removes what was started."""

    def add(self, number: int, image_id: str, path: str, response: prelabel_pb2.PreLabelResponse) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...
