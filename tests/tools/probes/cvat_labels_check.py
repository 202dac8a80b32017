"""Check the CVAT label files of an output folder with the real cvat_sdk and datumaro; print
what they saw.

    python cvat_labels_check.py OUT   (run with the cvat tool venv)

- Every entry of OUT/cvat_labels*.json becomes a `PatchedLabelRequest` (the request model
  of a label in CVAT's REST API; sublabels `SublabelRequest`, attributes
  `AttributeRequest`) through the SDK's own deserializer, which checks field types, names'
  length, required fields and attribute input types; the label types (which the model
  leaves untyped) against `LabelType`, and no key unknown to the models. Each file is then
  the `labels` of a `ProjectWriteRequest` and a `TaskWriteRequest`.
- cvat_sdk's auto-annotation mapper matches prelabel.cvat_function's labels (per task set)
  against a task made from each file (allow_unmatched_labels=False).
- The COCO files import with datumaro (CVAT's importer library): their label names, and
  the keypoint names and joints of their skeletons.
"""
import json
import logging
import sys
from pathlib import Path
from types import SimpleNamespace

from cvat_sdk.api_client import Configuration, models
from cvat_sdk.api_client.model_utils import validate_and_convert_types
from cvat_sdk.auto_annotation.driver import _AnnotationMapper
from datumaro.components.dataset import Dataset

from prelabel import cvat_function

out = Path(sys.argv[1])
conf = Configuration()
KNOWN = {"label": set(models.PatchedLabelRequest.attribute_map), "sublabel": set(models.SublabelRequest.attribute_map),
         "attribute": set(models.AttributeRequest.attribute_map)}


def check_keys(kind, entry, where, errors):
    unknown = set(entry) - KNOWN[kind]
    if unknown:
        errors.append(f"{where}: keys unknown to cvat_sdk: {sorted(unknown)}")


def check_label(entry, where, errors):
    """The entry as cvat_sdk's PatchedLabelRequest, or errors."""
    check_keys("label", entry, where, errors)
    for a in entry.get("attributes", []):
        check_keys("attribute", a, f"{where} attribute {a.get('name')!r}", errors)
    for s in entry.get("sublabels", []):
        check_keys("sublabel", s, f"{where} sublabel {s.get('name')!r}", errors)
        for a in s.get("attributes", []):
            check_keys("attribute", a, f"{where} sublabel {s.get('name')!r} attribute", errors)
    try:
        label = validate_and_convert_types(entry, (models.PatchedLabelRequest,), [where], True, True,
                                           configuration=conf)
        for item in [label, *getattr(label, "sublabels", [])]:
            models.LabelType(item.type)  # raises on a type CVAT does not have
        assert all(isinstance(s, models.SublabelRequest) for s in getattr(label, "sublabels", []))
        assert all(isinstance(a, models.AttributeRequest) for a in label.attributes)
        return label
    except Exception as e:  # noqa: BLE001 - report every failure
        errors.append(f"{where}: {type(e).__name__}: {e}")
        return None


def task_labels(entries):
    """The labels a CVAT task made from the file would have (ids of its own)."""
    return [SimpleNamespace(id=100 + i, name=e["name"], type=e["type"], attributes=[],
                            sublabels=[SimpleNamespace(id=1000 + 100 * i + j, name=s["name"], type=s["type"],
                                                       attributes=[])
                                       for j, s in enumerate(e.get("sublabels", []))])
            for i, e in enumerate(entries)]


files = {}
for path in sorted(out.glob("cvat_labels*.json")):
    entries = json.loads(path.read_text())
    errors: list = []
    labels = [check_label(e, f"{path.name}[{i}] {e.get('name')!r}", errors) for i, e in enumerate(entries)]
    if not errors:
        for request in (models.ProjectWriteRequest, models.TaskWriteRequest):
            try:
                request(name="prelabel drafts", labels=labels)
            except Exception as e:  # noqa: BLE001
                errors.append(f"{request.__name__}: {type(e).__name__}: {e}")
    mapper = {}
    for tasks in ("detect", "segment", "detect,segment", "keypoints", "faces"):
        fn = cvat_function.create(router="127.0.0.1:1", tasks=tasks)  # connects on first detect only
        try:
            _AnnotationMapper(logging.getLogger("check"), fn.spec.labels, task_labels(entries),
                              allow_unmatched_labels=False, conv_mask_to_poly=False)
            mapper[tasks] = "ok"
        except Exception as e:  # noqa: BLE001
            mapper[tasks] = f"{type(e).__name__}: {e}"
    files[path.name] = {"checked": sum(1 for label in labels if label is not None),
                        "sublabels": sum(len(getattr(label, "sublabels", [])) for label in labels if label is not None),
                        "errors": errors, "function_tasks": mapper}

imported = {}
for task, fmt, name in (("detect", "coco_instances", "instances_detect"),
                        ("segment", "coco_instances", "instances_segment"),
                        ("keypoints", "coco_person_keypoints", "person_keypoints_keypoints"),
                        ("faces", "coco_person_keypoints", "person_keypoints_faces")):
    path = out / "coco" / "annotations" / f"{name}.json"
    if not path.exists():
        continue
    dataset = Dataset.import_from(str(path), fmt)
    cats = dataset.categories()
    label_cat = next(v for k, v in cats.items() if k.name == "label")
    points = {}
    for k, v in cats.items():
        if k.name == "points":
            points = {label_cat[i].name: {"labels": list(c.labels), "joints": sorted(sorted(j) for j in c.joints)}
                      for i, c in v.items.items()}
    imported[task] = {"labels": [c.name for c in label_cat], "points": points}

print(json.dumps({"files": files, "datumaro": imported}))
