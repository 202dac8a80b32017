"""YOLO TXT (`DIR/yolo/`), one sub-dataset per requested task, since the three YOLO label
kinds cannot share a file:

    yolo/detect/    `cls cx cy w h`                       (TASK_DETECT boxes)
    yolo/segment/   `cls x1 y1 x2 y2 ...`                 (TASK_SEGMENT, polygon of the mask)
    yolo/pose/      `cls cx cy w h px py pv ...` (17 kp)  (TASK_KEYPOINTS, class 0 = person)
    yolo/faces/     `cls cx cy w h px py pv ...` (5 kp)   (TASK_FACES, class 0 = face)

Each holds `data.yaml` (`names`, plus `kpt_shape` and `flip_idx` for pose and faces) and
`labels/<image path>.txt`: the image id's path with its extension replaced by `.txt`
(absolute ids lose their leading `/`, `..` becomes `__`; two ids that would share a file,
e.g. `a.jpg` and `a.png`, make the second `a.png.txt`). Every image gets a file in every
sub-dataset, empty when it has no label (YOLO's background image). All coordinates are
normalised by the image size and clipped to [0, 1]; visibility is COCO's 0/1/2 (0: point
written as 0 0 0).

Detect and segment classes are contiguous: the 80 COCO classes in COCO id order (the usual
coco80 numbering, 0 = person), 80 = face, then names outside that list in order of first
appearance. Segmentation uses the largest polygon of each mask (YOLO has one polygon per
object); polygons come from the router (`include_polygons`); masks without one are left out.

The tree is built under a temp folder and moved into place at close.
"""
from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import PurePosixPath

from prelabel.formats.common import (
    DEFAULT_FACE_KEYPOINTS,
    DEFAULT_PERSON_KEYPOINTS,
    FIXED_NAMES,
    TASK_DETECT,
    TASK_FACES,
    TASK_KEYPOINTS,
    TASK_SEGMENT,
    iter_labels,
)
from prelabel.journal import fsync_dir
from prelabel.v1 import prelabel_pb2

DIR_NAME = "yolo"
#: Sub-dataset per task.
KIND_OF_TASK = {TASK_DETECT: "detect", TASK_SEGMENT: "segment", TASK_KEYPOINTS: "pose", TASK_FACES: "faces"}


def label_relpath(image_id: str) -> str:
    """Label file path (POSIX, relative) for an image id, before collision handling."""
    parts = [("__" if p == ".." else p) for p in PurePosixPath(image_id.replace("\\", "/")).parts if p != "/"]
    if not parts:
        parts = ["_"]
    stem = os.path.splitext(parts[-1])[0] or parts[-1]
    return "/".join(parts[:-1] + [stem + ".txt"])


def flip_idx(names: list[str]) -> list[int]:
    """Horizontal-flip permutation: each "left..." point swaps with its "right..." twin."""
    index = {n: i for i, n in enumerate(names)}
    out = []
    for i, n in enumerate(names):
        twin = n.replace("left", "\0").replace("right", "left").replace("\0", "right")
        out.append(index.get(twin, i))
    return out


def largest_polygon(polygons) -> list[float]:
    best, best_area = [], -1.0
    for poly in polygons:
        pts = list(poly.points)
        if len(pts) < 6:
            continue
        xs, ys = pts[0::2], pts[1::2]
        area = abs(sum(xs[i] * ys[i - 1] - xs[i - 1] * ys[i] for i in range(len(xs)))) / 2
        if area > best_area:
            best, best_area = pts, area
    return best


def _n(value: float, size: int) -> str:
    return f"{min(max(value / size, 0.0), 1.0):.6f}"


def _box(box, w: int, h: int) -> list[str]:
    return [_n((box.x_min + box.x_max) / 2, w), _n((box.y_min + box.y_max) / 2, h),
            _n(box.x_max - box.x_min, w), _n(box.y_max - box.y_min, h)]


def lines_for(response: prelabel_pb2.PreLabelResponse, kind: str, class_of) -> list[str]:
    """The YOLO label lines of one image for one sub-dataset; `class_of(name)` -> int."""
    w, h = response.image_size.width, response.image_size.height
    if not w or not h:
        raise ValueError(f"response for {response.image_id!r} has no image size")
    lines = []
    for label in iter_labels(response):
        if KIND_OF_TASK[label.task] != kind:
            continue
        box = label.detection.box
        if kind == "detect":
            lines.append(" ".join([str(class_of(label.category)), *_box(box, w, h)]))
        elif kind == "segment":
            poly = largest_polygon(label.mask.polygons)
            if poly:
                coords = [_n(v, w if i % 2 == 0 else h) for i, v in enumerate(poly)]
                lines.append(" ".join([str(class_of(label.category)), *coords]))
        else:
            fields = ["0", *_box(box, w, h)]
            for kp in label.keypoints.keypoints:
                v = int(kp.visibility)
                fields += [_n(kp.x, w), _n(kp.y, h), str(v)] if v else ["0", "0", "0"]
            lines.append(" ".join(fields))
    return lines


def _yaml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


class YoloWriter:
    def __init__(self, out_dir: str | os.PathLike, *, tasks: list[str], **_: object):
        self.out_dir = os.fspath(out_dir)
        self.final = os.path.join(self.out_dir, DIR_NAME)
        self.tmp = os.path.join(self.out_dir, f".{DIR_NAME}.tmp-{os.getpid()}")
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.kinds = [KIND_OF_TASK[t] for t in tasks if t in KIND_OF_TASK]
        self._names = list(FIXED_NAMES)
        self._class = {n: i for i, n in enumerate(self._names)}
        self._used: set[str] = set()
        self._kp_names = {"pose": DEFAULT_PERSON_KEYPOINTS, "faces": DEFAULT_FACE_KEYPOINTS}
        for kind in self.kinds:
            os.makedirs(os.path.join(self.tmp, kind, "labels"))

    def class_of(self, name: str) -> int:
        if name not in self._class:
            self._class[name] = len(self._names)
            self._names.append(name)
        return self._class[name]

    def _relpath(self, image_id: str) -> str:
        rel = label_relpath(image_id)
        if rel in self._used:
            rel = rel[: -len(".txt")] + os.path.splitext(image_id)[1] + ".txt"
        n = 1
        base = rel
        while rel in self._used:
            rel = f"{base[: -len('.txt')]}~{n}.txt"
            n += 1
        self._used.add(rel)
        return rel

    def add(self, number: int, image_id: str, path: str, response: prelabel_pb2.PreLabelResponse) -> None:
        rel = self._relpath(image_id)
        for kind in self.kinds:
            lines = lines_for(response, kind, self.class_of)
            for instances, k in ((response.person_keypoints, "pose"), (response.faces, "faces")):
                if kind == k and instances and instances[0].keypoints:
                    self._kp_names[k] = [kp.name for kp in instances[0].keypoints]
            target = os.path.join(self.tmp, kind, "labels", rel)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "w", encoding="utf-8") as fh:
                fh.write("".join(line + "\n" for line in lines))

    def _data_yaml(self, kind: str) -> str:
        out = [f"# prelabel draft labels, YOLO {kind}; labels/ mirrors the image paths"]
        if kind in ("pose", "faces"):
            names = ["person" if kind == "pose" else "face"]
            kps = self._kp_names[kind]
            out += [f"kpt_shape: [{len(kps)}, 3]", f"flip_idx: {flip_idx(kps)}",
                    "kpt_names:", "  0: [" + ", ".join(_yaml_str(k) for k in kps) + "]"]
        else:
            names = self._names
        out.append("names:")
        out += [f"  {i}: {_yaml_str(n)}" for i, n in enumerate(names)]
        return "\n".join(out) + "\n"

    def close(self) -> None:
        for kind in self.kinds:
            with open(os.path.join(self.tmp, kind, "data.yaml"), "w", encoding="utf-8") as fh:
                fh.write(self._data_yaml(kind))
        # One sync for the whole tree (an fsync per small label file costs minutes on
        # network volumes), then swap the folders; _SUCCESS, written last, vouches for it.
        os.sync()
        old = f"{self.final}.old-{os.getpid()}"
        if os.path.exists(self.final):
            os.replace(self.final, old)
        os.replace(self.tmp, self.final)
        fsync_dir(self.out_dir)
        shutil.rmtree(old, ignore_errors=True)

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            shutil.rmtree(self.tmp)
