"""CVAT auto-annotation function backed by the prelabel router (the `cvat_sdk.auto_annotation`
detection-function interface: `spec` + `detect(context, image)`):

    pip install cvat-cli  # beside prelabel
    cvat-cli --server-host https://cvat.example task auto-annotate 42 \\
        --function-module prelabel.cvat_function \\
        -p router=str:router.prelabel:50051 -p tasks=str:detect,segment

Parameters (`-p NAME=TYPE:VALUE`, all optional; the module-level `spec`/`detect` use the
defaults, the router from $PRELABEL_ROUTER):
  router       HOST:PORT of the router (default $PRELABEL_ROUTER or 127.0.0.1:50051)
  tasks        comma-separated detect,segment,keypoints,faces (default detect)
  timeout_s    deadline of one router call (default 60)
  tls / token  TLS to the router (system roots) / bearer token it accepts

What comes back, labels matched by name to the task's labels (CVAT's rule):
  detect     rectangles labelled with the 80 COCO class names;
  segment    masks (or polygons, simplified as formats.polygons says, when CVAT asks with
             conv_mask_to_poly), same names;
  keypoints  skeletons "person" with the 17 COCO keypoints, visibility as CVAT wants it:
             v=0 -> outside, v=1 -> occluded, v=2 -> visible;
  faces      skeletons "face" with the 5 landmarks.
Every shape carries the label's `score`; CVAT's threshold (`--conf-threshold`) is passed
to the router. A skeleton label and a box label cannot share a name in one function, so
`keypoints` cannot be asked together with `detect` or `segment` (run twice).
"""
from __future__ import annotations

import io
import os

import cvat_sdk.auto_annotation as cvataa
import numpy as np
import PIL.Image
from cvat_sdk.masks import encode_mask
from pycocotools import mask as mask_utils

from prelabel.core.tasks import TASK_NAMES, TASKS, LabelKind
from prelabel.formats.common import OBJECT_NAMES, coco_category_id, iter_labels, selected
from prelabel.formats.polygons import mask_polygon
from prelabel.sdk import DEFAULT_ADDRESS, SyncPreLabelClient

#: Spec label ids of the keypoint tasks' skeletons (box labels use their COCO ids, 1..90).
SKELETON_IDS = {t.name: 1001 + i for i, t in enumerate(t for t in TASKS if t.keypoints is not None)}
#: CVAT shape type of the object labels, by the label kinds of the run's box and mask tasks.
OBJECT_LABEL_TYPE = {frozenset({LabelKind.BOX}): "rectangle", frozenset({LabelKind.MASK}): "mask",
                     frozenset({LabelKind.BOX, LabelKind.MASK}): "any"}


def build_spec(tasks: list[str]) -> cvataa.DetectionFunctionSpec:
    labels = []
    specs = selected(tasks)
    object_kinds = frozenset(t.kind for t in specs if t.keypoints is None)
    if object_kinds:
        kind = OBJECT_LABEL_TYPE[object_kinds]
        labels += [cvataa.label_spec(n, coco_category_id(n), type=kind) for n in OBJECT_NAMES]
    for task in specs:
        if task.keypoints is not None:
            labels.append(cvataa.skeleton_label_spec(
                task.keypoints.category, SKELETON_IDS[task.name],
                [cvataa.keypoint_spec(name, j) for j, name in enumerate(task.keypoints.names)]))
    return cvataa.DetectionFunctionSpec(labels=labels)


class PrelabelFunction:
    def __init__(self, router: str | None = None, tasks: str = "detect", timeout_s: float = 60.0,
                 tls: bool = False, token: str | None = None):
        self.tasks = [t.strip() for t in tasks.split(",") if t.strip()]
        unknown = set(self.tasks) - set(TASK_NAMES)
        if unknown or not self.tasks:
            raise ValueError(f"tasks must be among {','.join(TASK_NAMES)} (got {tasks!r})")
        specs = selected(self.tasks)
        objects = [t.name for t in specs if t.keypoints is None]
        for task in specs:
            if task.keypoints is not None and objects and task.keypoints.category in OBJECT_NAMES:
                raise ValueError(f"{task.name} (skeleton {task.keypoints.category!r}) cannot share a run with "
                                 f"{'/'.join(objects)} (rectangle {task.keypoints.category!r}): run the function twice")
        self.router = router or os.environ.get("PRELABEL_ROUTER", DEFAULT_ADDRESS)
        self.timeout_s = timeout_s
        self.tls = tls
        self.metadata = [("authorization", f"Bearer {token}")] if token else []
        self.spec = build_spec(self.tasks)
        self._client: SyncPreLabelClient | None = None

    @property
    def client(self) -> SyncPreLabelClient:
        if self._client is None:  # connect on first use: `spec` needs no router
            self._client = SyncPreLabelClient(self.router, timeout_s=self.timeout_s, tls=self.tls,
                                              metadata=self.metadata)
        return self._client

    def detect(self, context, image: PIL.Image.Image) -> list:
        buf = io.BytesIO()
        image.convert("RGB").save(buf, format="PNG")  # lossless: coordinates of this very image
        threshold = context.conf_threshold
        response = self.client.prelabel(buf.getvalue(), context.frame_name, self.tasks,
                                        include_polygons=bool(context.conv_mask_to_poly),
                                        score_threshold=threshold)
        return shapes_of(response, self.tasks, conv_mask_to_poly=bool(context.conv_mask_to_poly),
                         conf_threshold=threshold or 0.0)


def shapes_of(response, tasks: list[str], *, conv_mask_to_poly: bool = False, conf_threshold: float = 0.0) -> list:
    """CVAT shapes of one router response."""
    w, h = response.image_size.width, response.image_size.height
    shapes = []
    for label in iter_labels(response):
        score = float(label.detection.score)
        if label.task.name not in tasks or score < conf_threshold:
            continue
        b = label.detection.box
        box = [b.x_min, b.y_min, b.x_max, b.y_max]
        if label.kind is LabelKind.BOX and label.category in OBJECT_NAMES:
            shapes.append(cvataa.rectangle(coco_category_id(label.category), box, score=score))
        elif label.kind is LabelKind.MASK and label.mask is not None and label.category in OBJECT_NAMES:
            cid = coco_category_id(label.category)
            rle = label.mask.mask
            if conv_mask_to_poly:
                poly = mask_polygon(label.mask)  # simplified: the traced staircase is too many vertices to edit
                if len(poly) >= 6:
                    shapes.append(cvataa.polygon(cid, [float(v) for v in poly], score=score))
            elif rle.counts:
                bitmap = mask_utils.decode({"size": list(rle.size), "counts": rle.counts})
                bitmap = np.asarray(bitmap, dtype=bool)
                if bitmap.any():
                    ys, xs = np.nonzero(bitmap)
                    bbox = [int(xs.min()), int(ys.min()), min(int(xs.max()) + 1, w), min(int(ys.max()) + 1, h)]
                    shapes.append(cvataa.mask(cid, encode_mask(bitmap, bbox=bbox), score=score))
        elif label.task.keypoints is not None and label.keypoints is not None:
            names = label.task.keypoints.names
            by_name = {kp.name: kp for kp in label.keypoints.keypoints}
            elements = []
            for j, name in enumerate(names):
                kp = by_name.get(name)
                v = int(kp.visibility) if kp is not None else 0
                # CVAT wants every point of the skeleton: unlabelled ones are "outside".
                point = [float(kp.x), float(kp.y)] if kp is not None and v else [float(b.x_min), float(b.y_min)]
                elements.append(cvataa.keypoint(j, point, outside=v == 0, occluded=v == 1))
            shapes.append(cvataa.skeleton(SKELETON_IDS[label.task.name], elements, score=score))
    return shapes


def create(**params) -> PrelabelFunction:
    """cvat-cli's entry point for `-p` parameters."""
    return PrelabelFunction(**params)


_default = PrelabelFunction()
spec = _default.spec


def detect(context, image):
    return _default.detect(context, image)
