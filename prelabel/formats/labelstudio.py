"""Label Studio predictions (`DIR/labelstudio.json`): a task list to import into a project.

Each task: `data.image` (the image id, after an optional URL prefix), `data.image_id`,
`data.uncertainty` and `data.needs_review` (sortable and filterable in the Data Manager),
and one prediction `{model_version, score, result: [...]}` where `score` is the mean region
score and `model_version` the models that produced the labels. Regions, coordinates in
percent of the image, each with its own `score`:

- detect: `rectanglelabels` from `label`;
- segment: `polygonlabels` from `polygon` (largest polygon of the mask; masks come as
  polygons since Label Studio's brush uses its own RLE);
- keypoints / faces: `keypointlabels` from `keypoint`, one region per point with
  visibility > 0, linked by `parentID` to its instance's rectangle (the matching detect
  box when one overlaps it with IoU >= 0.7, else a `rectanglelabels` region of its own).

Labeling config that matches (names are the `from_name`s above):

    <View>
      <Image name="image" value="$image"/>
      <RectangleLabels name="label" toName="image"> <Label value="person"/> ... </RectangleLabels>
      <PolygonLabels name="polygon" toName="image"> <Label value="person"/> ... </PolygonLabels>
      <KeyPointLabels name="keypoint" toName="image"> <Label value="nose"/> ... </KeyPointLabels>
    </View>
"""
from __future__ import annotations

import json
import os

from prelabel.atomic import AtomicFile
from prelabel.formats.common import (
    TASK_DETECT,
    TASK_FACES,
    TASK_KEYPOINTS,
    TASK_SEGMENT,
    iter_labels,
    model_tag,
)
from prelabel.formats.yolo import largest_polygon
from prelabel.v1 import prelabel_pb2

FILE_NAME = "labelstudio.json"
#: Keypoint region size, percent of the image width.
KEYPOINT_WIDTH_PCT = 0.5
PARENT_MIN_IOU = 0.7


def _iou(a, b) -> float:
    ix = max(0.0, min(a.x_max, b.x_max) - max(a.x_min, b.x_min))
    iy = max(0.0, min(a.y_max, b.y_max) - max(a.y_min, b.y_min))
    inter = ix * iy
    union = (a.x_max - a.x_min) * (a.y_max - a.y_min) + (b.x_max - b.x_min) * (b.y_max - b.y_min) - inter
    return inter / union if union > 0 else 0.0


def _pct(value: float, size: int) -> float:
    return round(100.0 * value / size, 4)


def task_of(image_id: str, response: prelabel_pb2.PreLabelResponse, image_prefix: str = "") -> dict:
    """One Label Studio task with its prediction."""
    w, h = response.image_size.width, response.image_size.height
    if not w or not h:
        raise ValueError(f"response for {image_id!r} has no image size")
    common = {"to_name": "image", "original_width": w, "original_height": h, "image_rotation": 0}

    def rectangle(rid, label):
        box = label.detection.box
        return {"id": rid, "type": "rectanglelabels", "from_name": "label", **common,
                "value": {"x": _pct(box.x_min, w), "y": _pct(box.y_min, h),
                          "width": _pct(box.x_max - box.x_min, w), "height": _pct(box.y_max - box.y_min, h),
                          "rotation": 0, "rectanglelabels": [label.category]},
                "score": round(float(label.detection.score), 5)}

    result: list[dict] = []
    scores: list[float] = []
    models: set[str] = set()
    detections = []  # (region id, label) of detect boxes, for keypoint parents
    for label in iter_labels(response):
        rid = f"{label.task}-{label.index}"
        models.add(model_tag(label.detection.provenance))
        if label.task == TASK_DETECT:
            result.append(rectangle(rid, label))
            detections.append((rid, label))
        elif label.task == TASK_SEGMENT:
            poly = largest_polygon(label.mask.polygons)
            if not poly:
                continue
            points = [[_pct(poly[i], w), _pct(poly[i + 1], h)] for i in range(0, len(poly) - 1, 2)]
            result.append({"id": rid, "type": "polygonlabels", "from_name": "polygon", **common,
                           "value": {"points": points, "closed": True, "polygonlabels": [label.category]},
                           "score": round(float(label.detection.score), 5)})
        elif label.task in (TASK_KEYPOINTS, TASK_FACES):
            parent = max(
                ((_iou(d.detection.box, label.detection.box), prid) for prid, d in detections
                 if d.category == label.category),
                default=(0.0, None),
            )
            if parent[0] >= PARENT_MIN_IOU:
                parent_id = parent[1]
            else:
                parent_id = rid
                result.append(rectangle(rid, label))
            for k, kp in enumerate(label.keypoints.keypoints):
                if kp.visibility == 0:
                    continue
                result.append({"id": f"{rid}-kp{k}", "type": "keypointlabels", "from_name": "keypoint",
                               **common, "parentID": parent_id,
                               "value": {"x": _pct(kp.x, w), "y": _pct(kp.y, h), "width": KEYPOINT_WIDTH_PCT,
                                         "keypointlabels": [kp.name]},
                               "score": round(float(kp.score), 5)})
        else:
            continue
        scores.append(float(label.detection.score))
    prediction = {"model_version": ",".join(sorted(models)) or "prelabel", "result": result}
    if scores:
        prediction["score"] = round(sum(scores) / len(scores), 5)
    return {
        "data": {"image": image_prefix + image_id, "image_id": image_id,
                 "uncertainty": round(float(response.uncertainty.score), 5),
                 "needs_review": int(response.uncertainty.needs_review_count)},
        "predictions": [prediction],
    }


class LabelStudioWriter:
    def __init__(self, out_dir: str | os.PathLike, *, image_prefix: str = "", **_: object):
        self.image_prefix = image_prefix
        self._out = AtomicFile(os.path.join(out_dir, FILE_NAME))
        self._out.file.write("[")
        self._n = 0

    def add(self, number: int, image_id: str, path: str, response: prelabel_pb2.PreLabelResponse) -> None:
        task = task_of(image_id, response, self.image_prefix)
        self._out.file.write(("," if self._n else "") + "\n" + json.dumps(task, ensure_ascii=False))
        self._n += 1

    def close(self) -> None:
        self._out.file.write("\n]\n")
        self._out.commit()

    def abort(self) -> None:
        self._out.discard()
