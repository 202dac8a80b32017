"""Read the draft labels of `prelabel annotate` output folders (their journal.jsonl:
every finished image's full response, whatever --formats was), or a COCO file with
`score` per annotation (one of annotate's COCO files -- its task from the file name, review
and model from `attributes` -- or any COCO results file, taken as detect)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from google.protobuf import json_format

from prelabel.core.tasks import DETECT
from prelabel.formats.coco import keypoint_triplets
from prelabel.formats.common import iter_labels, xywh
from prelabel.journal import STATUS_OK, response_of
from prelabel.quality.labels import Ann, ImageLabels, normalise_key
from prelabel.v1 import common_pb2

JOURNAL_FILE = "journal.jsonl"


class DraftsError(ValueError):
    pass


@dataclass
class Drafts:
    images: dict[str, ImageLabels] = field(default_factory=dict)
    #: Models that produced the drafts: "name@version" -> provenance (proto JSON).
    models: dict[str, dict] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)


def _from_response(image_id: str, response) -> ImageLabels:
    image = ImageLabels(key=normalise_key(image_id), width=response.image_size.width,
                        height=response.image_size.height)
    for label in iter_labels(response):
        ann = Ann(category=label.category, bbox=[float(v) for v in xywh(label.detection.box)], task=label.task.name,
                  score=float(label.detection.score), review=label.review)
        if label.mask is not None and label.mask.mask.counts:
            ann.segmentation = {"size": [int(v) for v in label.mask.mask.size],
                                "counts": label.mask.mask.counts.decode("ascii")}
        if label.keypoints is not None:
            ann.keypoints = keypoint_triplets(label.keypoints)[0]
        image.anns.append(ann)
    return image


def _read_journal(path: str, drafts: Drafts) -> None:
    last: dict[str, dict] = {}
    with open(path, "rb") as fh:
        for line in fh:
            if not line.endswith(b"\n"):
                break  # torn tail of a killed run: not committed
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get("image_id"), str):
                last[record["image_id"]] = record  # the last record of an image wins
    for image_id, record in last.items():
        if record.get("status") != STATUS_OK:
            continue
        response = response_of(record)
        drafts.images[normalise_key(image_id)] = _from_response(image_id, response)
        for result in response.task_results:
            p = result.provenance
            if p.model_name:
                drafts.models[f"{p.model_name}@{p.model_version}"] = json_format.MessageToDict(
                    p, preserving_proto_field_name=True)
                drafts.models[f"{p.model_name}@{p.model_version}"]["weights"] = common_pb2.Weights.Name(p.weights)


def _read_coco(path: str, drafts: Drafts) -> None:
    from prelabel.quality.truth import task_of_file

    with open(path, encoding="utf-8") as fh:
        doc = json.load(fh)
    file_task = task_of_file(path) or DETECT.name
    names = {c["id"]: c["name"] for c in doc.get("categories", [])}
    by_id = {}
    for img in doc.get("images", []):
        key = normalise_key(str(img["file_name"]))
        by_id[img["id"]] = drafts.images.setdefault(
            key, ImageLabels(key=key, width=int(img.get("width", 0)), height=int(img.get("height", 0))))
    for a in doc.get("annotations", []):
        if "score" not in a:
            raise DraftsError(f"{path}: annotation {a.get('id')} has no score: not a drafts file")
        extra = a.get("attributes") or {}  # annotate's per-task files keep review and model there
        model = a.get("model") or extra.get("model") or "unknown"
        drafts.models.setdefault(model, {"model": model})
        by_id[a["image_id"]].anns.append(Ann(
            category=names.get(a["category_id"], f"class_{a['category_id']}"), bbox=[float(v) for v in a["bbox"]],
            task=a.get("task", file_task), score=float(a["score"]), review=a.get("review") or extra.get("review", ""),
            segmentation=a.get("segmentation") or None, keypoints=a.get("keypoints")))


def load_drafts(paths: list[str]) -> Drafts:
    """Drafts of one or more annotate output folders (shards) or COCO drafts files."""
    drafts = Drafts()
    for path in paths:
        if os.path.isdir(path):
            journal = os.path.join(path, JOURNAL_FILE)
            if not os.path.exists(journal):
                raise DraftsError(f"{path}: no {JOURNAL_FILE}: not a `prelabel annotate` output folder")
            _read_journal(journal, drafts)
        elif os.path.isfile(path):
            _read_coco(path, drafts)
        else:
            raise DraftsError(f"{path}: no such file or folder")
        drafts.sources.append(path)
    return drafts
