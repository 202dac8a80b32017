"""YOLO TXT (`DIR/yolo/`): one Ultralytics dataset per requested task, since the YOLO
label kinds cannot share a file, each ready for `yolo train data=DIR/yolo/<kind>/data.yaml`:

    yolo/detect/    `cls cx cy w h`                       (TASK_DETECT boxes)
    yolo/segment/   `cls x1 y1 x2 y2 ...`                 (TASK_SEGMENT, polygon of the mask)
    yolo/pose/      `cls cx cy w h px py pv ...` (17 kp)  (TASK_KEYPOINTS, class 0 = person)
    yolo/faces/     `cls cx cy w h px py pv ...` (5 kp)   (TASK_FACES, class 0 = face)

Each holds:
- `images/<name>`: a symlink to the image file that was labelled (absolute target), where
  <name> is the image's path relative to the image root (formats.common.relative_name)
  with every folder named `images` renamed `images_`: Ultralytics finds a label by
  replacing the *last* `/images/` of the image path with `/labels/`, so no folder below
  ours may carry that name;
- `labels/<name without extension>.txt`: the labels, paired by exactly that rule. Two
  images that would share a label file (`a.jpg`, `a.png`) give the second the name
  `a.png.png` (label `a.png.txt`). Every image gets a label file, empty when it has no
  label (YOLO's background image);
- `data.yaml`: `train` and `val` (`images`, or `train.txt` / `val.txt` lists when a
  validation fraction is asked for: an image is in val iff SHA-256 of its id, mod 10 000,
  is below fraction x 10 000, so shards agree; a side left empty points at the other one,
  which Ultralytics then reads for both), `names`, plus `kpt_shape` and `flip_idx`
  for pose and faces. No `path`: Ultralytics then takes the folder of data.yaml, so the
  dataset can be moved (a relative `path` would be read from the working directory).

All coordinates are normalised by the image size and clipped to [0, 1]; visibility is
COCO's 0/1/2 (0: point written as 0 0 0). Detect and segment classes are contiguous: the
80 COCO classes in COCO id order (the usual coco80 numbering, 0 = person), 80 = face, then
names outside that list in order of first appearance. Segmentation uses the largest
polygon of each mask (YOLO has one polygon per object), simplified (formats.polygons,
`polygon_tolerance`); polygons come from the router (`include_polygons`); masks without one,
and masks of area 0, are left out. Only labels whose review decision is in `review` are
written (default formats.common.DEFAULT_OUTPUTS_REVIEW: no rejected draft; the COCO files
keep them all). Ultralytics reads no GIF: such
inputs are linked but skipped by its loader.

The tree is built under a temp folder and moved into place at close.
"""
from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import shutil
from collections.abc import Collection
from typing import TextIO

from prelabel.atomic import swap_in_folder
from prelabel.core.tasks import LabelKind, TaskSpec
from prelabel.formats.common import DEFAULT_OUTPUTS_REVIEW, FIXED_NAMES, output_labels, relative_name, selected
from prelabel.formats.polygons import DEFAULT_TOLERANCE_PX, mask_polygon
from prelabel.v1 import prelabel_pb2

DIR_NAME = "yolo"


def dataset_name(image_id: str, image_root: str = "") -> str:
    """Path of an image under `images/` (before collision handling): no folder below it is
    named `images`, so Ultralytics pairs it with `labels/<same path>.txt`."""
    parts = relative_name(image_id, image_root).split("/")
    return "/".join([("images_" if p == "images" else p) for p in parts[:-1]] + parts[-1:])


def label_relpath(name: str) -> str:
    """Label path under `labels/` of an image at `images/<name>` (Ultralytics' rule)."""
    return name.rsplit(".", 1)[0] + ".txt" if "." in name.rsplit("/", 1)[-1] else name + ".txt"


def in_val(image_id: str, fraction: float) -> bool:
    """Deterministic train/val split by image id (the same in every shard)."""
    digest = hashlib.sha256(image_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % 10_000 < fraction * 10_000


def flip_idx(names: list[str]) -> list[int]:
    """Horizontal-flip permutation: each "left..." point swaps with its "right..." twin."""
    index = {n: i for i, n in enumerate(names)}
    out = []
    for i, n in enumerate(names):
        twin = n.replace("left", "\0").replace("right", "left").replace("\0", "right")
        out.append(index.get(twin, i))
    return out


def _n(value: float, size: int) -> str:
    return f"{min(max(value / size, 0.0), 1.0):.6f}"


def _box(box, w: int, h: int) -> list[str]:
    return [_n((box.x_min + box.x_max) / 2, w), _n((box.y_min + box.y_max) / 2, h),
            _n(box.x_max - box.x_min, w), _n(box.y_max - box.y_min, h)]


def lines_for(response: prelabel_pb2.PreLabelResponse, task: TaskSpec, class_of, *,
              review: Collection[str] | None = DEFAULT_OUTPUTS_REVIEW,
              polygon_tolerance: float = DEFAULT_TOLERANCE_PX) -> list[str]:
    """The YOLO label lines of one image for one task's sub-dataset; `class_of(name)` -> int;
    `review`: the decisions written (None: all)."""
    w, h = response.image_size.width, response.image_size.height
    if not w or not h:
        raise ValueError(f"response for {response.image_id!r} has no image size")
    lines = []
    for label in output_labels(response, review):
        if label.task is not task:
            continue
        box = label.detection.box
        if label.kind is LabelKind.BOX:
            lines.append(" ".join([str(class_of(label.category)), *_box(box, w, h)]))
        elif label.kind is LabelKind.MASK:
            poly = mask_polygon(label.mask, polygon_tolerance) if label.mask is not None else []
            if poly:
                coords = [_n(v, w if i % 2 == 0 else h) for i, v in enumerate(poly)]
                lines.append(" ".join([str(class_of(label.category)), *coords]))
        elif label.keypoints is not None:
            fields = ["0", *_box(box, w, h)]
            for kp in label.keypoints.keypoints:
                v = int(kp.visibility)
                fields += [_n(kp.x, w), _n(kp.y, h), str(v)] if v else ["0", "0", "0"]
            lines.append(" ".join(fields))
    return lines


def _yaml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


class YoloWriter:
    def __init__(self, out_dir: str | os.PathLike, *, tasks: list[str], image_root: str = "",
                 val_fraction: float = 0.0, review: Collection[str] | None = DEFAULT_OUTPUTS_REVIEW,
                 polygon_tolerance: float = DEFAULT_TOLERANCE_PX, **_: object):
        self.out_dir = os.fspath(out_dir)
        self.final = os.path.join(self.out_dir, DIR_NAME)
        self.tmp = os.path.join(self.out_dir, f".{DIR_NAME}.tmp-{os.getpid()}")
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tasks = selected(tasks)
        self.image_root = image_root
        self.val_fraction = val_fraction
        self.review = review
        self.polygon_tolerance = polygon_tolerance
        self._names = list(FIXED_NAMES)
        self._class = {n: i for i, n in enumerate(self._names)}
        self._used: set[str] = set()  # label paths taken
        # Keypoint names by dataset: the registry's until a response names the model's.
        self._kp_names = {t.yolo_kind: list(t.keypoints.names) for t in self.tasks if t.keypoints is not None}
        self._lists: dict[str, dict[str, TextIO]] = {}  # dataset -> split -> image list
        self._n_split = {"train": 0, "val": 0}
        for task in self.tasks:
            for sub in ("labels", "images"):
                os.makedirs(os.path.join(self.tmp, task.yolo_kind, sub))
            if val_fraction > 0:
                self._lists[task.yolo_kind] = {split: open(  # noqa: SIM115  # closed in _close_lists()
                                                   os.path.join(self.tmp, task.yolo_kind, f"{split}.txt"), "w",
                                                   encoding="utf-8")
                                               for split in ("train", "val")}

    def class_of(self, name: str) -> int:
        if name not in self._class:
            self._class[name] = len(self._names)
            self._names.append(name)
        return self._class[name]

    def _name(self, image_id: str) -> str:
        """The image's unique path under images/ (its label path unique too)."""
        name = dataset_name(image_id, self.image_root)
        ext = os.path.splitext(name)[1]
        candidates = itertools.chain([name, name + ext], (f"{name}~{n}{ext}" for n in itertools.count(1)))
        for candidate in candidates:  # lazily: almost always the first one
            if label_relpath(candidate) not in self._used:
                self._used.add(label_relpath(candidate))
                return candidate
        raise AssertionError("unreachable")

    def add(self, number: int, image_id: str, path: str, response: prelabel_pb2.PreLabelResponse) -> None:
        name = self._name(image_id)
        target = os.path.abspath(path or image_id)
        split = "val" if self.val_fraction > 0 and in_val(image_id, self.val_fraction) else "train"
        self._n_split[split] += 1
        for task in self.tasks:
            kind = task.yolo_kind
            lines = lines_for(response, task, self.class_of, review=self.review,
                              polygon_tolerance=self.polygon_tolerance)
            instances = task.labels(response)
            if task.keypoints is not None and instances and instances[0].keypoints:
                self._kp_names[kind] = [kp.name for kp in instances[0].keypoints]
            root = os.path.join(self.tmp, kind)
            label = os.path.join(root, "labels", label_relpath(name))
            link = os.path.join(root, "images", name)
            os.makedirs(os.path.dirname(label), exist_ok=True)
            os.makedirs(os.path.dirname(link), exist_ok=True)
            with open(label, "w", encoding="utf-8") as fh:
                fh.write("".join(line + "\n" for line in lines))
            os.symlink(target, link)
            if kind in self._lists:
                self._lists[kind][split].write(f"./images/{name}\n")

    def _data_yaml(self, task: TaskSpec) -> str:
        kind = task.yolo_kind
        out = [f"# prelabel draft labels, YOLO {kind}. No `path:` on purpose: Ultralytics then uses",
               "# this file's folder, so the dataset can be moved."]
        if kind not in self._lists:
            out += ["train: images", "val: images"]
        else:  # Ultralytics refuses an empty list: a run too small to split uses its one non-empty side
            train, val = (f"{split}.txt" for split in ("train", "val"))
            out += [f"train: {train if self._n_split['train'] else val}",
                    f"val: {val if self._n_split['val'] else train}"]
        if task.keypoints is not None:
            names = [task.keypoints.category]
            kps = self._kp_names[kind]
            out += [f"kpt_shape: [{len(kps)}, 3]", f"flip_idx: {flip_idx(kps)}",
                    "kpt_names:", "  0: [" + ", ".join(_yaml_str(k) for k in kps) + "]"]
        else:
            names = self._names
        out.append("names:")
        out += [f"  {i}: {_yaml_str(n)}" for i, n in enumerate(names)]
        return "\n".join(out) + "\n"

    def _close_lists(self) -> None:
        for files in self._lists.values():
            for fh in files.values():
                fh.close()

    def close(self) -> None:
        self._close_lists()
        for task in self.tasks:
            with open(os.path.join(self.tmp, task.yolo_kind, "data.yaml"), "w", encoding="utf-8") as fh:
                fh.write(self._data_yaml(task))
        # One sync for the whole tree (an fsync per small label file costs minutes on
        # network volumes), then swap the folders; _SUCCESS, written last, vouches for it.
        os.sync()
        swap_in_folder(self.tmp, self.final, self.out_dir)

    def abort(self) -> None:
        self._close_lists()
        with contextlib.suppress(OSError):
            shutil.rmtree(self.tmp)
