"""Label Studio (`DIR/labelstudio.json` + `DIR/labelstudio.xml`): a task list with
predictions to import into a project whose labeling config is the `.xml` written beside it.

Each task: `data.image` (the image's URL, see below), `data.image_id`, `data.uncertainty`
and `data.needs_review` (sortable and filterable in the Data Manager), and one prediction
`{model_version, score, result: [...]}` where `score` is the mean region score and
`model_version` is the same for every task of a run: the models that produced any label
of the run (`name@version`, sorted, comma-separated; "prelabel" when there was none).
Regions, coordinates in percent of the image, each with its own `score`:

One object labelled by several tasks (a person: detect box, segment mask, keypoints) is one
rectangle with the others as its children (formats.objects groups them by box IoU):

- detect: `rectanglelabels` from `label`, the object's region;
- segment: `polygonlabels` from `polygon` (largest polygon of the mask, simplified:
  formats.polygons, `polygon_tolerance`), or with
  `masks="brush"` `brushlabels` from `brush` (the whole mask in Label Studio's own RLE,
  formats.ls_brush), with `parentID` the object's rectangle when it has one;
- keypoints / faces: `keypointlabels` from `keypoint` (person) / `face_keypoint` (face: its
  landmark names repeat person ones, and one control cannot hold a label twice), one region
  per point with visibility > 0, with `parentID` the object's rectangle (the detect box it
  was grouped with, else a `rectanglelabels` region of the instance's own box). Label
  Studio has no visibility flag: hidden points are left out.

Per region (rectangles and masks; Label Studio shows them for the selected region, and an
annotator can change them): `review` (Choices: auto_accept / needs_review / reject, the
region's own decision) and `source` (TextArea: one line per label of the object -- task,
category, score, decision, model -- so the rectangle of a person says what segment and
keypoints made of it too).

The writer takes only the labels whose review decision is in `review` (default
formats.common.DEFAULT_OUTPUTS_REVIEW: no rejected draft; `prelabel annotate
--outputs-review`), and never a mask of area 0 (formats.common.output_labels).

Image URLs: by default Label Studio's local-files endpoint,
`/data/local-files/?d=<root name>/<name>` (URL-quoted), where <name> is the image's path
relative to the image root (formats.common.relative_name) and <root name> the root's own
folder name: Label Studio refuses a Local Storage whose path equals its document root, so
the document root is the image root's parent -- serve it with
`LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true`,
`LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=<parent of the image root>` and add a Local
Storage with path <image root> (the config's comment names both). With another prefix
(cloud storage, e.g. `s3://bucket/photos/`) the URL is `<prefix><name>`.

The labeling config holds every label the served models can produce (the 80 COCO classes,
face, and any other name of the run), the 17 person keypoints and the 5 face landmarks,
with one control per region kind the run's tasks produce, and the per-region `review` and
`source` controls.
"""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote
from xml.sax.saxutils import quoteattr

import numpy as np
from pycocotools import mask as mask_utils

from prelabel.atomic import AtomicFile, atomic_write_text
from prelabel.core.labels import FACE
from prelabel.core.review import AUTO_ACCEPT, DECISION_NAMES, NEEDS_REVIEW, REJECT
from prelabel.core.tasks import FACES, KEYPOINTS, TASKS, LabelKind, TaskSpec
from prelabel.formats import ls_brush
from prelabel.formats.common import (
    DEFAULT_OUTPUTS_REVIEW,
    FIXED_NAMES,
    Label,
    image_root_dir,
    iter_labels,
    model_tag,
    output_labels,
    relative_name,
    selected,
)
from prelabel.formats.objects import group_objects
from prelabel.formats.polygons import DEFAULT_TOLERANCE_PX, mask_polygon
from prelabel.v1 import common_pb2, prelabel_pb2

FILE_NAME = "labelstudio.json"
CONFIG_NAME = "labelstudio.xml"
LOCAL_FILES_PREFIX = "/data/local-files/?d="
MASK_MODES = ("polygon", "brush")
#: Control (`from_name`) of each region kind; the image object is `image`.
RECTANGLE, POLYGON, BRUSH, KEYPOINT, FACE_KEYPOINT = "label", "polygon", "brush", "keypoint", "face_keypoint"
#: Per-region controls: the region's review decision (Choices), where its labels came from (TextArea).
REVIEW, SOURCE = "review", "source"
#: Result types that belong to a region (same id) rather than being one.
PER_REGION_TYPES = ("choices", "textarea")
REVIEW_CHOICES = tuple(DECISION_NAMES[d] for d in (AUTO_ACCEPT, NEEDS_REVIEW, REJECT))
#: The KeyPointLabels control of each keypoint task (its kind, a Controls field, and its
#: default name): one each, since face landmark names repeat person ones.
KEYPOINT_CONTROLS = {KEYPOINTS.name: KEYPOINT, FACES.name: FACE_KEYPOINT}
#: Keypoint region size, percent of the image width.
KEYPOINT_WIDTH_PCT = 0.5


def _pct(value: float, size: int) -> float:
    return round(100.0 * value / size, 4)


@dataclass(frozen=True)
class Controls:
    """The labeling config's tag names the regions point at (`from_name`, `to_name`)."""

    image: str = "image"
    rectangle: str = RECTANGLE
    polygon: str = POLYGON
    brush: str = BRUSH
    keypoint: str = KEYPOINT
    face_keypoint: str = FACE_KEYPOINT
    review: str = REVIEW  # "" where the project has no such control: not written
    source: str = SOURCE

    def keypoints_of(self, task: TaskSpec) -> str:
        """The control of a keypoint task's points."""
        return getattr(self, KEYPOINT_CONTROLS[task.name])


def image_url(prefix: str, name: str) -> str:
    """`data.image` of an image named `name`: a query parameter is URL-quoted, a path prefix
    (cloud bucket, web server) is joined as it is."""
    return prefix + (quote(name, safe="/") if prefix.endswith("=") else name)


def source_line(label: Label) -> str:
    """Which task, model, score and review decision a label came from, for a person."""
    return (f"{label.task.name}: {label.category} {label.detection.score:.2f} {label.review}"
            f" ({model_tag(label.detection.provenance)})")


def brush_value(rle: common_pb2.RleMask, label: str) -> dict | None:
    """The `value` of a brushlabels region holding a COCO RLE mask (formats.ls_brush);
    None for an empty mask."""
    if not rle.counts:
        return None
    mask = mask_utils.decode({"size": list(rle.size), "counts": rle.counts})
    return {"format": "rle", "rle": ls_brush.encode(np.asarray(mask)), "brushlabels": [label]}


def results_of(response: prelabel_pb2.PreLabelResponse, masks: str = "polygon",
               controls: Controls = Controls(), *, review: Collection[str] | None = None,
               polygon_tolerance: float = DEFAULT_TOLERANCE_PX) -> tuple[list[dict], list[float]]:
    """Label Studio results of one response, object by object (formats.objects), and the
    scores of its labels; `review`: the decisions taken (None: all)."""
    w, h = response.image_size.width, response.image_size.height
    if not w or not h:
        raise ValueError(f"response for {response.image_id!r} has no image size")
    common = {"to_name": controls.image, "original_width": w, "original_height": h, "image_rotation": 0}

    def rid_of(label: Label) -> str:
        return f"{label.task.name}-{label.index}"

    def rectangle(label: Label) -> dict:
        box = label.detection.box
        return {"id": rid_of(label), "type": "rectanglelabels", "from_name": controls.rectangle, **common,
                "value": {"x": _pct(box.x_min, w), "y": _pct(box.y_min, h),
                          "width": _pct(box.x_max - box.x_min, w), "height": _pct(box.y_max - box.y_min, h),
                          "rotation": 0, "rectanglelabels": [label.category]},
                "score": round(float(label.detection.score), 5)}

    def mask_region(label: Label) -> dict | None:
        assert label.mask is not None
        score = round(float(label.detection.score), 5)
        if masks == "brush":
            value = brush_value(label.mask.mask, label.category)
            if value is None:
                return None
            return {"id": rid_of(label), "type": "brushlabels", "from_name": controls.brush, **common,
                    "value": value, "score": score}
        poly = mask_polygon(label.mask, polygon_tolerance)
        if not poly:
            return None
        points = [[_pct(poly[i], w), _pct(poly[i + 1], h)] for i in range(0, len(poly) - 1, 2)]
        return {"id": rid_of(label), "type": "polygonlabels", "from_name": controls.polygon, **common,
                "value": {"points": points, "closed": True, "polygonlabels": [label.category]}, "score": score}

    def per_region(region: dict, own: Label, labels: Sequence[Label]) -> list[dict]:
        """The region's review decision (`own`'s) and where its object's labels came from,
        as per-region results (same id as the region, its geometry beside; brush masks
        without their RLE twice)."""
        geometry = {k: v for k, v in region["value"].items() if k not in (region["type"], "rle", "format")}
        out = []
        if controls.review and own.review in REVIEW_CHOICES:
            out.append({"id": region["id"], "type": "choices", "from_name": controls.review, **common,
                        "value": {**geometry, "choices": [own.review]}})
        if controls.source:
            out.append({"id": region["id"], "type": "textarea", "from_name": controls.source, **common,
                        "value": {**geometry, "text": [source_line(label) for label in labels]}})
        return out

    result: list[dict] = []
    scores: list[float] = []
    for obj in group_objects(output_labels(response, review)):
        # The object's rectangle: its detect box, else its keypoint instance's box.
        box_label = obj.of_kind(LabelKind.BOX) or obj.of_kind(LabelKind.KEYPOINTS)
        parent = None
        if box_label is not None:
            parent = rectangle(box_label)
            result.append(parent)
            # the rectangle speaks for the object: every label of it in its source lines
            result.extend(per_region(parent, box_label, obj.labels))
        for label in obj.labels:
            if label.kind is LabelKind.MASK:
                region = mask_region(label)
                if region is None:
                    continue
                if parent is not None:
                    region["parentID"] = parent["id"]
                result.append(region)
                result.extend(per_region(region, label, [label]))
            elif label.kind is LabelKind.KEYPOINTS and label.keypoints is not None and parent is not None:
                control = controls.keypoints_of(label.task)
                for k, kp in enumerate(label.keypoints.keypoints):
                    if kp.visibility == 0:
                        continue
                    result.append({"id": f"{rid_of(label)}-kp{k}", "type": "keypointlabels", "from_name": control,
                                   **common, "parentID": parent["id"],
                                   "value": {"x": _pct(kp.x, w), "y": _pct(kp.y, h), "width": KEYPOINT_WIDTH_PCT,
                                             "keypointlabels": [kp.name]},
                                   "score": round(float(kp.score), 5)})
            scores.append(float(label.detection.score))
    return result, scores


def task_of(image_id: str, response: prelabel_pb2.PreLabelResponse, *, url: str | None = None,
            masks: str = "polygon", model_version: str | None = None, review: Collection[str] | None = None,
            polygon_tolerance: float = DEFAULT_TOLERANCE_PX) -> dict:
    """One Label Studio task with its prediction (`model_version`: the run's, else this
    response's models; `review`: the decisions taken, None: all)."""
    result, scores = results_of(response, masks, review=review, polygon_tolerance=polygon_tolerance)
    if model_version is None:
        model_version = run_model_version({model_tag(label.detection.provenance) for label in iter_labels(response)})
    prediction: dict[str, object] = {"model_version": model_version, "result": result}
    if scores:
        prediction["score"] = round(sum(scores) / len(scores), 5)
    return {
        "data": {"image": image_id if url is None else url, "image_id": image_id,
                 "uncertainty": round(float(response.uncertainty.score), 5),
                 "needs_review": int(response.uncertainty.needs_review_count)},
        "predictions": [prediction],
    }


def run_model_version(tags: set[str]) -> str:
    return ",".join(sorted(tags)) or "prelabel"


def _labels(names) -> str:
    return "".join(f"\n    <Label value={quoteattr(n)}/>" for n in names)


def labeling_config(tasks: Sequence[str], *, masks: str = "polygon", extra_names: Iterable[str] = (),
                    keypoint_names: Mapping[str, Sequence[str]] | None = None, comment: str = "") -> str:
    """The labeling config (XML) that matches the predictions of a run of `tasks`;
    `keypoint_names`: by keypoint task, the names the model sent (default: the registry's)."""
    specs = selected(tasks)
    kinds = {t.kind for t in specs}
    boxes = list(dict.fromkeys(list(FIXED_NAMES) + list(extra_names)))
    objects = [n for n in boxes if n != FACE]
    parts = ["<View>"]
    if comment:
        parts.append(f"  <!-- {comment.replace('--', '- -')} -->")
    parts.append('  <Image name="image" value="$image" zoom="true"/>')
    if kinds & {LabelKind.BOX, LabelKind.KEYPOINTS}:  # keypoint instances come with a box
        parts.append(f'  <RectangleLabels name="{RECTANGLE}" toName="image">{_labels(boxes)}\n  </RectangleLabels>')
    if LabelKind.MASK in kinds:
        tag, name = ("BrushLabels", BRUSH) if masks == "brush" else ("PolygonLabels", POLYGON)
        parts.append(f'  <{tag} name="{name}" toName="image">{_labels(objects)}\n  </{tag}>')
    for task in specs:
        if task.keypoints is not None:
            kps = (keypoint_names or {}).get(task.name, task.keypoints.names)
            parts.append(f'  <KeyPointLabels name="{KEYPOINT_CONTROLS[task.name]}" toName="image">{_labels(kps)}'
                         f'\n  </KeyPointLabels>')
    # Per-region: shown for the selected region (its review decision, the tasks that labelled it).
    choices = "".join(f'\n    <Choice value="{c}"/>' for c in REVIEW_CHOICES)
    parts.append(f'  <Choices name="{REVIEW}" toName="image" perRegion="true" choice="single-radio">{choices}'
                 f'\n  </Choices>')
    parts.append(f'  <TextArea name="{SOURCE}" toName="image" perRegion="true" rows="3"/>')
    parts.append("</View>")
    return "\n".join(parts) + "\n"


class LabelStudioWriter:
    def __init__(self, out_dir: str | os.PathLike, *, tasks: Sequence[str] = (), image_prefix: str | None = None,
                 image_root: str = "", ls_masks: str = "polygon",
                 review: Collection[str] | None = DEFAULT_OUTPUTS_REVIEW,
                 polygon_tolerance: float = DEFAULT_TOLERANCE_PX, **_: object):
        if ls_masks not in MASK_MODES:
            raise ValueError(f"ls_masks must be one of {MASK_MODES}")
        self.out_dir = os.fspath(out_dir)
        self.tasks = list(tasks)
        self.prefix = LOCAL_FILES_PREFIX if image_prefix is None else image_prefix
        self.image_root = image_root
        self.masks = ls_masks
        self.review = review
        self.polygon_tolerance = polygon_tolerance
        # The spool stays open until close().
        self._spool = tempfile.TemporaryFile("w+", encoding="utf-8", dir=self.out_dir)  # noqa: SIM115
        self._models: set[str] = set()
        self._extra: dict[str, None] = {}
        # Keypoint names by task: the registry's until a response names the model's.
        self._kps = {t.name: list(t.keypoints.names) for t in TASKS if t.keypoints is not None}
        self._root_dir = ""

    def _name(self, image_id: str) -> str:
        name = relative_name(image_id, self.image_root)
        if self.prefix != LOCAL_FILES_PREFIX:
            return name
        root_name = os.path.basename(image_root_dir(self.image_root, image_id))
        return f"{root_name}/{name}" if root_name else name

    def add(self, number: int, image_id: str, path: str, response: prelabel_pb2.PreLabelResponse) -> None:
        url = image_url(self.prefix, self._name(image_id))
        task = task_of(image_id, response, url=url, masks=self.masks, model_version="", review=self.review,
                       polygon_tolerance=self.polygon_tolerance)
        for label in iter_labels(response):
            self._models.add(model_tag(label.detection.provenance))
            if label.category not in FIXED_NAMES:
                self._extra[label.category] = None
            if label.keypoints is not None and label.keypoints.keypoints:
                self._kps[label.task.name] = [kp.name for kp in label.keypoints.keypoints]
        self._spool.write(json.dumps(task, ensure_ascii=False) + "\n")
        self._root_dir = self._root_dir or image_root_dir(self.image_root, image_id)

    def close(self) -> None:
        version = run_model_version(self._models)
        root = self._root_dir or image_root_dir(self.image_root, "")
        comment = f"prelabel {version}."
        if self.prefix == LOCAL_FILES_PREFIX:
            comment += (f" Images: LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={os.path.dirname(root)} and a Local"
                        f" Storage with path {root}")
        config = labeling_config(self.tasks, masks=self.masks, extra_names=list(self._extra),
                                 keypoint_names=self._kps, comment=comment)
        atomic_write_text(os.path.join(self.out_dir, CONFIG_NAME), config)
        out = AtomicFile(os.path.join(self.out_dir, FILE_NAME))
        try:
            out.file.write("[")
            self._spool.seek(0)
            for n, line in enumerate(self._spool):
                task = json.loads(line)
                task["predictions"][0]["model_version"] = version
                out.file.write(("," if n else "") + "\n" + json.dumps(task, ensure_ascii=False))
            out.file.write("\n]\n")
        except BaseException:
            out.discard()
            raise
        out.commit()
        self._spool.close()

    def abort(self) -> None:
        self._spool.close()
