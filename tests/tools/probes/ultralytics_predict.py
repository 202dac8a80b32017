"""Ultralytics' own predictor on ONNX exports: the reference the layout decoders are tested
against (run with the onnx-export tool venv).

    python ultralytics_predict.py JOBS_JSON OUT.npz

JOBS_JSON: a file with [{"key", "onnx", "rtdetr": bool, "image", "imgsz": [H, W], "conf", "iou",
"rect": bool}] (rect=False: a dynamic-shape export is fed the full imgsz, not the smallest
stride-multiple rectangle the predictor picks for it by default).
For each job OUT.npz holds, under "KEY/...": the predictor's model input (uint8 RGB, what its
LetterBox made), boxes (x1, y1, x2, y2, source pixels), conf, cls, and masks (bits, at the
model input's size) or keypoints (x, y[, visibility], source pixels). Prints a JSON summary.
"""
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")  # before ultralytics: no DNS probes, installs or telemetry

import cv2
import numpy as np
from ultralytics import RTDETR, YOLO


def main(jobs_path: str, out: str) -> None:
    jobs = json.loads(Path(jobs_path).read_text())
    arrays, summary, models = {}, {}, {}
    for job in jobs:
        key = job["key"]
        model = models.get(job["onnx"])
        if model is None:
            model = models[job["onnx"]] = (RTDETR if job["rtdetr"] else YOLO)(job["onnx"])
        bgr = cv2.imread(job["image"])
        started = time.perf_counter()
        result = model.predict(bgr, imgsz=job["imgsz"], conf=job["conf"], iou=job["iou"],
                               rect=job["rect"], verbose=False)[0]
        seconds = time.perf_counter() - started
        fed = model.predictor.preprocess([bgr])[0]  # the same pre-transform, on the same image
        arrays[f"{key}/input"] = (fed.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        arrays[f"{key}/boxes"] = result.boxes.xyxy.numpy().astype(np.float32)
        arrays[f"{key}/conf"] = result.boxes.conf.numpy().astype(np.float32)
        arrays[f"{key}/cls"] = result.boxes.cls.numpy().astype(np.int32)
        if result.masks is not None:
            masks = result.masks.data.numpy() > 0.5
            arrays[f"{key}/mask_shape"] = np.array(masks.shape)
            arrays[f"{key}/mask_bits"] = np.packbits(masks)
        if result.keypoints is not None:
            arrays[f"{key}/keypoints"] = result.keypoints.data.numpy().astype(np.float32)
        summary[key] = {"detections": len(result.boxes), "seconds": round(seconds, 3)}
    np.savez_compressed(out, **arrays)
    print(json.dumps(summary))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
