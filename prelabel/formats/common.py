"""What every output format shares: walking a response's labels, fixed category ids, and
the writer interface."""
from __future__ import annotations

import os
import posixpath
import zlib
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from prelabel.core.labels import COCO_CATEGORIES, FACE
from prelabel.core.review import DECISION_NAMES, decision_name
from prelabel.core.tasks import TASKS, LabelKind, TaskSpec
from prelabel.v1 import common_pb2, keypoints_pb2, prelabel_pb2, segmentation_pb2

# Fixed category ids, identical in every shard so shard outputs merge without remapping:
# COCO names keep their COCO ids (1..90), "face" gets 91 (unused by COCO), any other name
# a stable id from its CRC-32 above 1000.
FACE_COCO_ID = 91
COCO_ID_BY_NAME = {name: cid for cid, name in COCO_CATEGORIES.items()}
#: Contiguous class order for YOLO: the 80 COCO classes in COCO id order (the usual
#: "coco80" numbering, 0 = person), then face.
FIXED_NAMES: list[str] = [COCO_CATEGORIES[cid] for cid in sorted(COCO_CATEGORIES)] + [FACE]
#: The review decisions `prelabel annotate --outputs-review` chooses from.
REVIEW_CHOICES = [name for name in DECISION_NAMES.values() if name != "unspecified"]
#: What the train-ready outputs (YOLO, Label Studio) take by default: no rejected draft. The
#: COCO files keep every label as produced, for calibration (docs/quality.md).
DEFAULT_OUTPUTS_REVIEW = ("auto_accept", "needs_review")
#: The box categories of detect and segment: every fixed name but "face", which only the
#: faces task labels.
OBJECT_NAMES = [n for n in FIXED_NAMES if n != FACE]


def selected(names: Iterable[str]) -> list[TaskSpec]:
    """The registry's tasks among `names` (task names, as the CLI passes them), in registry
    order."""
    wanted = set(names)
    return [t for t in TASKS if t.name in wanted]


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
    if name == FACE:
        return FACE_COCO_ID
    return 1000 + zlib.crc32(name.encode("utf-8")) % 1_000_000


@dataclass(frozen=True)
class Label:
    """One draft label of an image, whatever task produced it."""

    task: TaskSpec
    index: int  # position in its task's list in the response
    detection: common_pb2.Detection
    mask: segmentation_pb2.InstanceMask | None = None  # tasks of LabelKind.MASK
    keypoints: keypoints_pb2.KeypointInstance | None = None  # tasks of LabelKind.KEYPOINTS

    @property
    def kind(self) -> LabelKind:
        return self.task.kind

    @property
    def category(self) -> str:
        return self.detection.category.name or f"class_{self.detection.category.id}"

    @property
    def review(self) -> str:
        return decision_name(self.detection.review)

    @property
    def needs_review(self) -> bool:
        return self.detection.review == common_pb2.REVIEW_DECISION_NEEDS_REVIEW


def iter_labels(response: prelabel_pb2.PreLabelResponse) -> Iterator[Label]:
    """Every label of a response, task by task in registry order (detections, masks,
    person keypoints, faces)."""
    for task in TASKS:
        for i, message in enumerate(task.labels(response)):
            yield Label(task, i, task.detection(message),
                        mask=message if task.kind is LabelKind.MASK else None,
                        keypoints=message if task.kind is LabelKind.KEYPOINTS else None)


def is_empty_mask(label: Label) -> bool:
    """A mask label without a single pixel (the box was too small or the mask fell under the
    threshold everywhere)."""
    return label.kind is LabelKind.MASK and (label.mask is None or label.mask.area == 0)


def output_labels(response: prelabel_pb2.PreLabelResponse,
                  review: Collection[str] | None = None) -> Iterator[Label]:
    """The labels an output file takes: iter_labels but masks of area 0, and with `review`
    (decision names) only the labels whose decision is among them (a label with no decision,
    "unspecified", always passes: the filter is about what a policy rejected).

    One rule for masks of area 0 in every output (COCO, and through it FiftyOne and
    datumaro; YOLO; Label Studio): left out. There is nothing to edit, train on or draw,
    YOLO and Label Studio cannot express an empty region, and as a COCO result it could
    only ever count as a false positive; the journal keeps it, as it keeps every label."""
    for label in iter_labels(response):
        if is_empty_mask(label):
            continue
        if review is not None and label.review != "unspecified" and label.review not in review:
            continue
        yield label


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
