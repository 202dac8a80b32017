"""Import COCO files with the importers CVAT calls (datumaro); print what they read.

    python datumaro_import.py FORMAT FILE   (FORMAT: coco_instances | coco_person_keypoints)
"""
import json
import sys
from collections import Counter

from datumaro.components.dataset import Dataset

fmt, path = sys.argv[1], sys.argv[2]
dataset = Dataset.import_from(path, fmt)
labels = dataset.categories()[next(k for k in dataset.categories() if k.name == "label")]
items = {}
for item in dataset:
    anns = []
    for ann in item.annotations:
        anns.append({"type": ann.type.name, "label": labels[ann.label].name if ann.label is not None else None,
                     "attributes": {k: v for k, v in ann.attributes.items()},
                     "points": len(getattr(ann, "points", []) or []), "group": ann.group})
    items[item.id] = {"size": list(item.media.size) if item.media and item.media.size else None, "anns": anns}
points_cats = None
for key, cat in dataset.categories().items():
    if key.name == "points":
        points_cats = {labels[k].name: {"labels": list(v.labels), "joints": [list(j) for j in v.joints]}
                       for k, v in cat.items.items()}
print(json.dumps({"items": items, "types": Counter(a["type"] for i in items.values() for a in i["anns"]),
                  "labels": len(labels), "points_categories": points_cats}, default=str))
