"""COCO JSON, one dataset file per task, because a file mixing tasks is wrong for every
consumer: COCOeval would score every mask, keypoint and face box as a detection, and
CVAT's "COCO Keypoints 1.0" importer requires keypoints on every category. The files use
the COCO layout (`annotations/<kind>_<subset>.json`, the subset being the task), which
datumaro -- the importer library CVAT runs -- requires to find them. Each loads with
`pycocotools.coco.COCO`, its `annotations` list is accepted by `COCO.loadRes`, and CVAT
imports it as it is (the file alone, or a zip of `coco/`). `coco/images` is a symlink to
the image root, the folder every `file_name` is relative to (datumaro wants it; FiftyOne
takes it as `data_path`):

    coco/annotations/instances_detect.json          "COCO 1.0"   boxes (`segmentation: []`)
    coco/annotations/instances_segment.json         "COCO 1.0"   masks (compressed RLE)
    coco/annotations/person_keypoints_keypoints.json "COCO Keypoints 1.0"  person, 17 points
    coco/annotations/person_keypoints_faces.json    "COCO Keypoints 1.0"  face, 5 landmarks

- `images`: `id` (1-based position of the image in the shard's input order), `file_name`
  (the image's path relative to the image root, see formats.common.relative_name: CVAT
  matches it to the task frame whose name ends with it, extension ignored), `width`,
  `height`.
- `annotations`: `bbox` [x, y, w, h] in pixels, `category_id`, `score`, `area`,
  `iscrowd` 0, `segmentation` on every one (`[]` for a box), and `attributes`
  {`review`: auto_accept / needs_review / reject, `model`: name@version, marked when its
  weights are random} -- CVAT and FiftyOne read extras only from there. Keypoint files add
  `keypoints` [x, y, v] * K (COCO visibility 0/1/2) and `num_keypoints` (v > 0).
- `categories`: detect and segment list the 80 COCO categories with their COCO ids plus
  any other name seen (stable id, see formats.common), so every shard's list is the same;
  keypoints lists "person" (id 1), faces lists "face" (id 91).

Every label is written whatever its review decision (`prelabel annotate --outputs-review`
filters the train-ready YOLO and Label Studio outputs only): `prelabel calibrate` and
`evaluate` need the rejected drafts too. Masks of area 0 are left out, as in every output
(formats.common.output_labels says why).

COCOeval: person keypoints use COCOeval's default sigmas; face landmarks need
`params.kpt_oks_sigmas = prelabel.core.tasks.FACES.keypoints.oks_sigmas` (5 values, see
prelabel.core.labels.FACE_LANDMARK_SIGMAS).

Written in one pass with memory independent of the number of images: images and
annotations are spooled to anonymous temp files and assembled at close.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from datetime import datetime, timezone

from prelabel.atomic import swap_in_folder
from prelabel.core.tasks import BY_NAME, TASK_NAMES, LabelKind, TaskSpec
from prelabel.formats.common import (
    FIXED_NAMES,
    OBJECT_NAMES,
    coco_category_id,
    image_root_dir,
    model_tag,
    output_labels,
    relative_name,
    schema_for,
    selected,
    xywh,
)
from prelabel.formats.cvat_labels import write_label_files
from prelabel.v1 import prelabel_pb2

DIR_NAME = "coco"


def file_name(task: str) -> str:
    """The COCO file of a task (`annotations/<kind>_<task>.json`, the registry's coco_file),
    relative to `DIR/coco`."""
    return BY_NAME[task].coco_file


def file_path(out_dir: str | os.PathLike, task: str) -> str:
    return os.path.join(out_dir, DIR_NAME, file_name(task))


def _r(value: float, digits: int = 2) -> float:
    return round(float(value), digits)


def keypoint_triplets(instance) -> tuple[list[float], int]:
    """COCO `keypoints` [x, y, v, ...] and `num_keypoints` of a KeypointInstance."""
    flat: list[float] = []
    labelled = 0
    for kp in instance.keypoints:
        v = int(kp.visibility)
        if v == 0:
            flat += [0, 0, 0]
        else:
            flat += [_r(kp.x), _r(kp.y), v]
            labelled += 1
    return flat, labelled


def annotation_of(label, image_number: int, ann_id: int) -> dict:
    """The COCO annotation of one label."""
    bbox = [_r(v) for v in xywh(label.detection.box)]
    ann = {
        "id": ann_id,
        "image_id": image_number,
        "category_id": coco_category_id(label.category),
        "bbox": bbox,
        "area": _r(bbox[2] * bbox[3]),
        "iscrowd": 0,
        "segmentation": [],
        "score": _r(label.detection.score, 5),
        "attributes": {"review": label.review, "model": model_tag(label.detection.provenance)},
    }
    if label.kind is LabelKind.MASK and label.mask.mask.counts:
        rle = label.mask.mask
        ann["segmentation"] = {"size": [int(v) for v in rle.size], "counts": rle.counts.decode("ascii")}
        ann["area"] = int(label.mask.area)
    if label.kind is LabelKind.KEYPOINTS:
        ann["keypoints"], ann["num_keypoints"] = keypoint_triplets(label.keypoints)
    return ann


class TaskCategories:
    """The `categories` of one task's COCO file, learnt from the labels as they come: the
    fixed list plus any other name seen (box and mask tasks), or the keypoint category with
    the names and skeleton of the first response that carries them (keypoint tasks)."""

    def __init__(self, task: TaskSpec):
        self.task = task
        self.extra: dict[int, str] = {}  # names outside FIXED_NAMES, by category id
        kps = task.keypoints
        self.keypoint_names = list(kps.names) if kps is not None else []
        self.skeleton = [list(edge) for edge in kps.skeleton] if kps is not None else []
        self._schema_seen = False

    def note_label(self, label) -> None:
        if self.task.keypoints is None and label.category not in FIXED_NAMES:
            self.extra[coco_category_id(label.category)] = label.category

    def note_schema(self, response: prelabel_pb2.PreLabelResponse) -> None:
        """Keypoint names and skeleton from the first response that carries them."""
        if self.task.keypoints is None:
            return
        instances = self.task.labels(response)
        if self._schema_seen or not instances or not instances[0].keypoints:
            return
        names = [kp.name for kp in instances[0].keypoints]
        self.keypoint_names = names
        schema = schema_for(response, names)
        if schema is not None and schema.skeleton:
            flat = list(schema.skeleton)
            self.skeleton = [flat[i:i + 2] for i in range(0, len(flat) - 1, 2)]
        self._schema_seen = True

    def categories(self) -> list[dict]:
        if self.task.keypoints is not None:
            name = self.task.keypoints.category
            return [{"id": coco_category_id(name), "name": name, "supercategory": name,
                     "keypoints": self.keypoint_names, "skeleton": self.skeleton}]
        names = OBJECT_NAMES + [self.extra[c] for c in sorted(self.extra)]
        return [{"id": coco_category_id(n), "name": n, "supercategory": n} for n in names]


class _TaskFile:
    """One task's COCO file, spooled until close."""

    def __init__(self, task: TaskSpec, spool_dir: str):
        self.task = task
        # Both spools stay open until close().
        self.images = tempfile.TemporaryFile("w+", encoding="utf-8", dir=spool_dir)  # noqa: SIM115
        self.anns = tempfile.TemporaryFile("w+", encoding="utf-8", dir=spool_dir)  # noqa: SIM115
        self.n_images = self.n_anns = 0
        self.cats = TaskCategories(task)

    def add_image(self, image: dict) -> None:
        self.images.write(("," if self.n_images else "") + json.dumps(image, ensure_ascii=False))
        self.n_images += 1

    def add_label(self, label, image_number: int) -> None:
        self.cats.note_label(label)
        ann = annotation_of(label, image_number, self.n_anns + 1)
        self.anns.write(("," if self.n_anns else "") + json.dumps(ann, ensure_ascii=False))
        self.n_anns += 1

    def note_schema(self, response: prelabel_pb2.PreLabelResponse) -> None:
        self.cats.note_schema(response)

    def categories(self) -> list[dict]:
        return self.cats.categories()

    def write(self, fh) -> None:
        head = {
            "info": {"description": f"prelabel draft labels, task {self.task.name}",
                     "date_created": datetime.now(timezone.utc).isoformat(timespec="seconds")},
            "licenses": [],
            "categories": self.categories(),
        }
        fh.write(json.dumps(head, ensure_ascii=False)[:-1] + ',"images":[')
        self.images.seek(0)
        shutil.copyfileobj(self.images, fh)
        fh.write('],"annotations":[')
        self.anns.seek(0)
        shutil.copyfileobj(self.anns, fh)
        fh.write("]}\n")

    def close(self) -> None:
        self.images.close()
        self.anns.close()


class CocoWriter:
    def __init__(self, out_dir: str | os.PathLike, *, tasks: Sequence[str] = TASK_NAMES, image_root: str = "",
                 **_: object):
        self.out_dir = os.fspath(out_dir)
        self.final = os.path.join(self.out_dir, DIR_NAME)
        self.tmp = os.path.join(self.out_dir, f".{DIR_NAME}.tmp-{os.getpid()}")
        shutil.rmtree(self.tmp, ignore_errors=True)
        os.makedirs(os.path.join(self.tmp, "annotations"))
        self.image_root = image_root
        self.files = {t.name: _TaskFile(t, self.tmp) for t in selected(tasks)}
        self._linked = False

    def add(self, number: int, image_id: str, path: str, response: prelabel_pb2.PreLabelResponse) -> None:
        if not self._linked:
            os.symlink(image_root_dir(self.image_root, image_id), os.path.join(self.tmp, "images"))
            self._linked = True
        image = {"id": number, "file_name": relative_name(image_id, self.image_root),
                 "width": response.image_size.width, "height": response.image_size.height}
        for f in self.files.values():
            f.add_image(image)
            f.note_schema(response)
        for label in output_labels(response):  # every review decision: the files feed calibration
            if label.task.name in self.files:
                self.files[label.task.name].add_label(label, number)

    def close(self) -> None:
        for f in self.files.values():
            with open(os.path.join(self.tmp, f.task.coco_file), "w", encoding="utf-8") as fh:
                f.write(fh)
                fh.flush()
                os.fsync(fh.fileno())
            f.close()
        swap_in_folder(self.tmp, self.final, self.out_dir)
        # The CVAT labels for these files, from the same categories (beside coco/, so a zip
        # of coco/ uploads to CVAT as it is).
        write_label_files(self.out_dir, {t: f.categories() for t, f in self.files.items()})

    def abort(self) -> None:
        for f in self.files.values():
            f.close()
        with contextlib.suppress(OSError):
            shutil.rmtree(self.tmp)
