"""Load YOLO datasets with Ultralytics' own checker and loader; print what it found.

    python ultralytics_load.py DATA_YAML...   (run with the ultralytics tool venv)
"""
import json
import sys

from ultralytics.data import YOLODataset
from ultralytics.data.utils import check_det_dataset

TASK_OF = {"detect": "detect", "segment": "segment", "pose": "pose", "faces": "pose"}

out = {}
for yaml_path in sys.argv[1:]:
    kind = yaml_path.rstrip("/").split("/")[-2]
    data = check_det_dataset(yaml_path)
    splits = {}
    for split in ("train", "val"):
        ds = YOLODataset(img_path=data[split], data=data, task=TASK_OF[kind], imgsz=320, augment=False, cache=False)
        splits[split] = {"images": len(ds.im_files), "instances": sum(len(lb["cls"]) for lb in ds.labels)}
        if split == "train":
            dataset = ds
    labels = dataset.labels
    out[kind] = {
        "splits": splits, "val_is_train": data["val"] == data["train"],
        "nc": data["nc"], "kpt_shape": data.get("kpt_shape"),
        "images": len(dataset.im_files),
        "instances": sum(len(lb["cls"]) for lb in labels),
        "with_labels": sum(1 for lb in labels if len(lb["cls"])),
        "segments": sum(len(lb.get("segments", [])) for lb in labels),
        "keypoints": [list(lb["keypoints"].shape) for lb in labels if lb.get("keypoints") is not None and len(lb["cls"])],
        "label_files": sorted(dataset.label_files),
        "im_files": sorted(dataset.im_files),
        "first_item_keys": sorted(dataset[0].keys()),
    }
print(json.dumps(out))
