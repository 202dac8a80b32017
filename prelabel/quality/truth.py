"""Read corrected labels ("truth") in the formats annotation tools export:

- COCO json, e.g. annotate's own COCO files corrected by hand: a file named as in its
  layout (`instances_detect.json`, `instances_segment.json`, `person_keypoints_keypoints.json`,
  `person_keypoints_faces.json`) or an annotation with a `task` field says which task its
  objects belong to;
- CVAT "COCO 1.0" and "COCO Keypoints 1.0" exports (COCO files: CVAT's own category
  ids, matched here by name; boxes with `segmentation: []`; masks as polygons or
  uncompressed RLE), the .json inside the export or the export .zip itself;
- Label Studio JSON export (a list of tasks): `rectanglelabels` (boxes), `polygonlabels`
  (masks), `keypointlabels` linked to their box by `parentID`; coordinates in percent of
  `original_width` / `original_height`. The last annotation of a task that was not
  cancelled counts. Brush masks are skipped (counted in `skipped`).

Several files may be given (a CVAT COCO 1.0 and a Keypoints 1.0 export of the same
task): an object whose box matches one of the same category read from an earlier file
(IoU >= 0.9) is the same object -- its keypoints are added to it, not a second object.

The label space -- which categories humans labelled -- is the file's category list
(COCO) or every label that occurs (Label Studio); drafts of other categories are not
judged.
"""
from __future__ import annotations

import json
import os
import re
import zipfile
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlparse

from prelabel.core.geometry import box_iou_xywh
from prelabel.core.tasks import TASKS
from prelabel.quality.labels import Ann, ImageLabels, normalise_key

SAME_OBJECT_IOU = 0.9
#: The suite's point order of each keypoint category.
KEYPOINT_NAMES = {t.keypoints.category: list(t.keypoints.names) for t in TASKS if t.keypoints is not None}
# Label Studio prefixes uploaded files with 8 hex digits and a dash.
_LS_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")
#: The task of each of annotate's COCO files, by file name.
_TASK_OF_FILE = {os.path.basename(t.coco_file): t.name for t in TASKS}


class TruthError(ValueError):
    pass


@dataclass
class Truth:
    images: dict[str, ImageLabels] = field(default_factory=dict)
    categories: set[str] = field(default_factory=set)
    #: category -> keypoint names, from the files (COCO `categories[].keypoints`).
    keypoint_names: dict[str, list[str]] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    #: image key -> objects read from earlier files (the ones a later file may repeat).
    earlier: dict[str, int] = field(default_factory=dict)


def _add(truth: Truth, key: str, width: int, height: int, ann: Ann) -> None:
    image = truth.images.setdefault(key, ImageLabels(key=key, width=width, height=height))
    image.width, image.height = image.width or width, image.height or height
    for other in image.anns[:truth.earlier.get(key, 0)]:  # objects of the files read before
        if (other.category == ann.category and other.task == ann.task
                and box_iou_xywh(other.bbox, ann.bbox) >= SAME_OBJECT_IOU):
            if ann.has_keypoints and not other.has_keypoints:
                other.keypoints = ann.keypoints
            return
    image.anns.append(ann)


def task_of_file(name: str) -> str:
    """The task of a file in annotate's COCO layout (`instances_detect.json`,
    `person_keypoints_faces.json`, ...); "" for any other name (e.g. CVAT's `*_default`)."""
    return _TASK_OF_FILE.get(os.path.basename(name), "")


def _coco(doc: dict, truth: Truth, task: str = "") -> None:
    names = {}
    for c in doc.get("categories", []):
        names[c["id"]] = c["name"]
        truth.categories.add(c["name"])
        if c.get("keypoints"):
            truth.keypoint_names[c["name"]] = list(c["keypoints"])
    images = {}
    for img in doc.get("images", []):
        key = normalise_key(str(img["file_name"]))
        images[img["id"]] = (key, int(img.get("width", 0)), int(img.get("height", 0)))
        truth.images.setdefault(key, ImageLabels(key=key, width=images[img["id"]][1], height=images[img["id"]][2]))
    for a in doc.get("annotations", []):
        key, w, h = images[a["image_id"]]
        name = names.get(a["category_id"], f"class_{a['category_id']}")
        kps = a.get("keypoints") or None
        if kps and name in truth.keypoint_names:
            kps = _reorder(kps, truth.keypoint_names[name], KEYPOINT_NAMES.get(name))
        _add(truth, key, w, h, Ann(category=name, bbox=[float(v) for v in a["bbox"]], task=a.get("task", task),
                                   segmentation=a.get("segmentation") or None, keypoints=kps,
                                   iscrowd=bool(a.get("iscrowd", 0))))


def _reorder(kps: list, names: list[str], wanted: list[str] | None) -> list:
    """Keypoints in the suite's order (a tool may list the points in another order)."""
    if not wanted or names == wanted or set(names) != set(wanted):
        return list(kps)
    at = {n: i for i, n in enumerate(names)}
    return [v for n in wanted for v in kps[3 * at[n]:3 * at[n] + 3]]


def _ls_key(data: dict) -> str:
    if data.get("image_id"):
        return normalise_key(str(data["image_id"]))
    url = str(data.get("image", ""))
    parsed = urlparse(url)
    if "d" in parse_qs(parsed.query):  # local storage: /data/local-files/?d=<relative path>
        return normalise_key(unquote(parse_qs(parsed.query)["d"][0]))
    path = unquote(parsed.path)
    if "/data/upload/" in path:
        return normalise_key(_LS_UPLOAD_PREFIX.sub("", os.path.basename(path)))
    return normalise_key(path.lstrip("/") if parsed.scheme in ("", "file") else os.path.basename(path))


def _label_studio(tasks: list, truth: Truth) -> None:
    for task in tasks:
        # "completions": exports of Label Studio before 1.0.
        annotations = [a for a in task.get("annotations", task.get("completions", [])) if not a.get("was_cancelled")]
        if not annotations:
            continue
        key = _ls_key(task.get("data", {}))
        boxes: dict[str, Ann] = {}
        points: list[dict] = []
        w = h = 0
        image = truth.images.setdefault(key, ImageLabels(key=key))
        for r in annotations[-1].get("result", []):
            v, kind = r.get("value", {}), r.get("type")
            w, h = int(r.get("original_width", w) or w), int(r.get("original_height", h) or h)
            sx, sy = w / 100.0, h / 100.0
            if kind == "rectanglelabels":
                name = v["rectanglelabels"][0]
                ann = Ann(category=name, bbox=[v["x"] * sx, v["y"] * sy, v["width"] * sx, v["height"] * sy])
                boxes[r.get("id", str(len(boxes)))] = ann
                image.anns.append(ann)
                truth.categories.add(name)
            elif kind == "polygonlabels":
                name = v["polygonlabels"][0]
                flat = [c for x, y in v["points"] for c in (x * sx, y * sy)]
                xs, ys = flat[0::2], flat[1::2]
                image.anns.append(Ann(category=name, bbox=[min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)],
                                      segmentation=[flat]))
                truth.categories.add(name)
            elif kind == "keypointlabels":
                points.append({"parent": r.get("parentID"), "name": v["keypointlabels"][0],
                               "x": v["x"] * sx, "y": v["y"] * sy})
            else:
                truth.skipped[str(kind)] = truth.skipped.get(str(kind), 0) + 1
        image.width, image.height = image.width or w, image.height or h
        for p in points:
            parent = boxes.get(p["parent"])
            names = KEYPOINT_NAMES.get(parent.category) if parent else None
            if parent is None or not names or p["name"] not in names:
                truth.skipped["keypointlabels without a person/face box"] = \
                    truth.skipped.get("keypointlabels without a person/face box", 0) + 1
                continue
            if parent.keypoints is None:
                parent.keypoints = [0.0] * (3 * len(names))
            i = names.index(p["name"])
            parent.keypoints[3 * i:3 * i + 3] = [p["x"], p["y"], 2]


def _load_doc(doc, truth: Truth, where: str) -> None:
    if isinstance(doc, list):
        _label_studio(doc, truth)
    elif isinstance(doc, dict) and "images" in doc and "annotations" in doc:
        _coco(doc, truth, task_of_file(where))
    else:
        raise TruthError(f"{where}: neither a COCO file (images, annotations) nor a Label Studio export (a list)")


def load_truth(paths: list[str]) -> Truth:
    truth = Truth()
    for path in paths:
        truth.earlier = {k: len(img.anns) for k, img in truth.images.items()}
        try:
            if zipfile.is_zipfile(path):  # a CVAT export: annotations/*.json
                with zipfile.ZipFile(path) as z:
                    members = sorted(n for n in z.namelist() if n.endswith(".json"))
                    if not members:
                        raise TruthError(f"{path}: no .json inside")
                    for name in members:
                        _load_doc(json.loads(z.read(name)), truth, f"{path}:{name}")
            else:
                with open(path, encoding="utf-8") as fh:
                    _load_doc(json.load(fh), truth, path)
        except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
            if isinstance(exc, TruthError):
                raise
            raise TruthError(f"{path}: cannot read corrected labels: {exc!r}") from None
        truth.sources.append(path)
    return truth
