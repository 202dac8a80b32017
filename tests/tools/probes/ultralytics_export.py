"""Export an Ultralytics model to ONNX, offline (run with the onnx-export tool venv).

    python ultralytics_export.py SPEC_JSON OUT.onnx

SPEC_JSON: {"model": "yolo11n-seg.yaml" | "/path/yolo11n.pt", "imgsz": [H, W], "export": {...
Ultralytics export arguments: nms, conf, dynamic...}, "calibrate": [image paths]}.

A model built from a yaml has random weights (seeded: the same file every time), and as
initialised it says the same thing everywhere: activations fade through the layers and the
head's biases make every anchor's score ~1e-4 (so NMS order would be a coin toss). Its
BatchNorm statistics are therefore measured on the `calibrate` photos and each YOLO head's
output convolutions standardised on them (class logits shifted down so scores spread over
0..1; side distances of DFL-free heads kept positive so boxes are not inside out): still
random weights, but outputs that vary with the image, which a decoder comparison needs.
Prints {"onnx": OUT, "seconds": ...}.
"""
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")  # before ultralytics: no DNS probes, installs or telemetry

import cv2
import torch
from torch import nn
from ultralytics import RTDETR, YOLO
from ultralytics.data.augment import LetterBox

CLASS_LOGIT_SHIFT = 4.0
DISTANCE_MEAN, DISTANCE_STD = 2.0, 0.5  # in strides


def photos(paths, imgsz):
    ims = [LetterBox(imgsz, auto=False)(image=cv2.imread(p))[..., ::-1].copy() for p in paths]
    return torch.stack([torch.from_numpy(im).permute(2, 0, 1).float() / 255 for im in ims])


def calibrate(net, batch):
    net.eval()
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batch
        m.train()
    with torch.no_grad():
        net(batch)
    for m in norms:
        m.eval()
    head = net.model[-1]
    if not hasattr(head, "cv3"):  # RT-DETR's decoder: BatchNorm statistics only
        return
    convs = [m for m in head.modules() if isinstance(m, nn.Conv2d) and m.bias is not None]
    seen = {}
    hooks = [c.register_forward_hook(lambda mod, i, o: seen.__setitem__(mod, o)) for c in convs]
    with torch.no_grad():
        if getattr(head, "one2one_cv2", None) is not None:  # YOLO26/v10: run both heads
            for end2end in (True, False):
                head.end2end = end2end
                net(batch)
        else:
            net(batch)
    for h in hooks:
        h.remove()
    class_convs = {id(s[-1]) for name in ("cv3", "one2one_cv3") for s in (getattr(head, name, None) or [])}
    # Heads without DFL (YOLO26: reg_max 1) regress side distances directly: keep them positive.
    distance_convs = {id(s[-1]) for name in ("cv2", "one2one_cv2") for s in (getattr(head, name, None) or [])
                      if getattr(head, "reg_max", 16) == 1}
    with torch.no_grad():
        for c in convs:
            if c not in seen:  # a training-only branch (e.g. YOLO26-seg's semantic head)
                continue
            out = seen[c]
            mean, std = out.mean(dim=(0, 2, 3)), out.std(dim=(0, 2, 3)) + 1e-6
            c.weight.div_(std[:, None, None, None])
            c.bias.sub_(mean).div_(std)
            if id(c) in class_convs:
                c.bias.sub_(CLASS_LOGIT_SHIFT)
            elif id(c) in distance_convs:
                c.weight.mul_(DISTANCE_STD)
                c.bias.mul_(DISTANCE_STD).add_(DISTANCE_MEAN)


def build(name: str):
    return (RTDETR if "rtdetr" in Path(name).stem else YOLO)(name)


def main(spec_json: str, out: str) -> None:
    spec = json.loads(spec_json)
    started = time.monotonic()
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        # export() writes beside the weights (a yaml's to the cwd): work in a scratch folder
        name = spec["model"] if spec["model"].endswith(".yaml") else shutil.copy(spec["model"], tmp)
        torch.manual_seed(0)  # a yaml's random initialisation: the same file every time
        model = build(name)
        if name.endswith(".yaml"):
            calibrate(model.model, photos(spec["calibrate"], spec["imgsz"]))
        os.chdir(tmp)
        try:
            written = Path(model.export(format="onnx", opset=17, imgsz=spec["imgsz"], **spec.get("export", {})))
            written = written.resolve()
        finally:
            os.chdir(cwd)
        shutil.move(written, out)
    print(json.dumps({"onnx": out, "seconds": round(time.monotonic() - started, 1)}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
