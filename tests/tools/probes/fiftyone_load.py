"""Load the COCO files with FiftyOne's COCODetectionDataset importer; print what it read.

    python fiftyone_load.py COCO_DIR   (run with the fiftyone tool venv)
"""
import json
import sys
from pathlib import Path

import fiftyone as fo

coco = Path(sys.argv[1])
out = {}
for name, types in (("instances_detect", ["detections"]), ("instances_segment", ["detections", "segmentations"]),
                    ("person_keypoints_keypoints", ["keypoints"]), ("person_keypoints_faces", ["keypoints"])):
    ds = fo.Dataset.from_dir(dataset_type=fo.types.COCODetectionDataset, data_path=str(coco / "images"),
                             labels_path=str(coco / "annotations" / f"{name}.json"), label_types=types,
                             name=f"prelabel-{name}")
    got = {"samples": len(ds), "files_exist": all(Path(s.filepath).exists() for s in ds), "fields": {}}
    for field in ds.get_field_schema():
        labels = []
        for sample in ds:
            value = sample[field]
            for attr in ("detections", "keypoints"):
                if hasattr(value, attr) and isinstance(getattr(value, attr), list):
                    labels += getattr(value, attr)
        if labels:
            got["fields"][field] = {
                "type": type(labels[0]).__name__, "count": len(labels),
                "confidence": sorted({round(lab.confidence, 3) for lab in labels if lab.confidence is not None}),
                "masks": sum(1 for lab in labels if getattr(lab, "mask", None) is not None),
                "attrs": sorted({k for lab in labels for k in lab.field_names}),
                "points": sorted({len(lab.points) for lab in labels if getattr(lab, "points", None) is not None})}
    out[name] = got
print(json.dumps(out, default=str))
