"""COCO JSON (`DIR/coco.json`): one dataset file that `pycocotools.coco.COCO` loads, and
whose `annotations` list `COCO.loadRes` accepts as results.

- `images`: `id` (1-based position of the image in the shard's input order), `file_name`
  (the image id), `width`, `height`.
- `annotations`: one per label and task. Every one has `bbox` [x, y, w, h] in pixels,
  `category_id`, `score`, `area`, `iscrowd` 0, and the extras `task` (detect / segment /
  keypoints / faces), `review` (auto_accept / needs_review / reject) and `model`
  (`name@version`, marked when its weights are random). Masks add `segmentation` as
  compressed RLE `{"size": [h, w], "counts": str}` and `area` = mask pixels; person
  keypoints and faces add `keypoints` [x, y, v] * K (COCO visibility 0/1/2) and
  `num_keypoints` (points with v > 0).
- `categories`: the 80 COCO categories with their COCO ids, "face" = 91, and any other name
  with a stable id (see formats.common); "person" carries the 17 keypoint names and the
  1-based skeleton, "face" its 5 landmark names. The list is the same in every shard.

Written in one pass with memory independent of the number of images: images and
annotations are spooled to anonymous temp files and assembled at close.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from datetime import datetime, timezone

from prelabel.atomic import AtomicFile
from prelabel.formats.common import (
    DEFAULT_FACE_KEYPOINTS,
    DEFAULT_PERSON_KEYPOINTS,
    DEFAULT_PERSON_SKELETON,
    FACE_NAME,
    FIXED_NAMES,
    PERSON_NAME,
    TASK_FACES,
    TASK_KEYPOINTS,
    TASK_SEGMENT,
    coco_category_id,
    iter_labels,
    model_tag,
    schema_for,
    xywh,
)
from prelabel.v1 import prelabel_pb2

FILE_NAME = "coco.json"


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


def annotations_of(number: int, response: prelabel_pb2.PreLabelResponse, first_id: int) -> list[dict]:
    """The COCO annotations of one image, ids from `first_id`."""
    anns = []
    for label in iter_labels(response):
        bbox = [_r(v) for v in xywh(label.detection.box)]
        ann = {
            "id": first_id + len(anns),
            "image_id": number,
            "category_id": coco_category_id(label.category),
            "bbox": bbox,
            "area": _r(bbox[2] * bbox[3]),
            "iscrowd": 0,
            "score": _r(label.detection.score, 5),
            "task": label.task,
            "review": label.review,
            "model": model_tag(label.detection.provenance),
        }
        if label.task == TASK_SEGMENT and label.mask.mask.counts:
            rle = label.mask.mask
            ann["segmentation"] = {"size": [int(v) for v in rle.size], "counts": rle.counts.decode("ascii")}
            ann["area"] = int(label.mask.area)
        if label.task in (TASK_KEYPOINTS, TASK_FACES):
            ann["keypoints"], ann["num_keypoints"] = keypoint_triplets(label.keypoints)
        anns.append(ann)
    return anns


class CocoWriter:
    def __init__(self, out_dir: str | os.PathLike, **_: object):
        self.path = os.path.join(out_dir, FILE_NAME)
        self._images = tempfile.TemporaryFile("w+", encoding="utf-8", dir=out_dir)
        self._anns = tempfile.TemporaryFile("w+", encoding="utf-8", dir=out_dir)
        self._n_images = 0
        self._n_anns = 0
        self._extra: dict[int, str] = {}
        self._keypoints: dict[str, tuple[list[str], list[int]]] = {
            PERSON_NAME: (DEFAULT_PERSON_KEYPOINTS, DEFAULT_PERSON_SKELETON),
            FACE_NAME: (DEFAULT_FACE_KEYPOINTS, []),
        }
        self._schema_seen: set[str] = set()

    def _note_schemas(self, response: prelabel_pb2.PreLabelResponse) -> None:
        for category, instances in ((PERSON_NAME, response.person_keypoints), (FACE_NAME, response.faces)):
            if category in self._schema_seen or not instances:
                continue
            names = [kp.name for kp in instances[0].keypoints]
            schema = schema_for(response, names)
            if schema is not None:
                self._keypoints[category] = (names, list(schema.skeleton))
                self._schema_seen.add(category)

    def add(self, number: int, image_id: str, path: str, response: prelabel_pb2.PreLabelResponse) -> None:
        image = {"id": number, "file_name": image_id,
                 "width": response.image_size.width, "height": response.image_size.height}
        self._images.write(("," if self._n_images else "") + json.dumps(image, ensure_ascii=False))
        self._n_images += 1
        self._note_schemas(response)
        for label in iter_labels(response):
            if label.category not in FIXED_NAMES:
                self._extra[coco_category_id(label.category)] = label.category
        for ann in annotations_of(number, response, self._n_anns + 1):
            self._anns.write(("," if self._n_anns else "") + json.dumps(ann, ensure_ascii=False))
            self._n_anns += 1

    def categories(self) -> list[dict]:
        cats = []
        for name in FIXED_NAMES + [self._extra[cid] for cid in sorted(self._extra)]:
            cat = {"id": coco_category_id(name), "name": name, "supercategory": name}
            if name in self._keypoints:
                names, skeleton = self._keypoints[name]
                cat["keypoints"] = names
                cat["skeleton"] = [list(skeleton[i:i + 2]) for i in range(0, len(skeleton) - 1, 2)]
            cats.append(cat)
        return cats

    def close(self) -> None:
        out = AtomicFile(self.path)
        try:
            head = {
                "info": {"description": "prelabel draft labels",
                         "date_created": datetime.now(timezone.utc).isoformat(timespec="seconds")},
                "licenses": [],
                "categories": self.categories(),
            }
            out.file.write(json.dumps(head, ensure_ascii=False)[:-1] + ',"images":[')
            self._images.seek(0)
            shutil.copyfileobj(self._images, out.file)
            out.file.write('],"annotations":[')
            self._anns.seek(0)
            shutil.copyfileobj(self._anns, out.file)
            out.file.write("]}\n")
        except BaseException:
            out.discard()
            raise
        out.commit()
        self.abort()

    def abort(self) -> None:
        self._images.close()
        self._anns.close()
