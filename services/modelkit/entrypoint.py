"""The one `TritonPythonModel` every model_repository/<model>/1/model.py exposes.

The implementation is chosen by the config's `implementation` parameter, so a model's
CPU profile (config.pbtxt) and GPU profile (configs/gpu.pbtxt) can run different code
behind the same head and the same tensor contract. Imported lazily: an ONNX model never
imports the torchvision R-CNN code and the reverse.
"""
from __future__ import annotations

import importlib
import json

IMPLEMENTATIONS: dict[str, str] = {
    "nanodet": "services.modelkit.nanodet:NanoDetDetector",
    "movenet": "services.modelkit.movenet:MoveNetKeypointer",
    "cpu_masks": "services.modelkit.cpu_masks:CpuSegmenter",
    "mtcnn": "services.modelkit.face_detector:FaceDetector",
    "torchvision_detector": "services.modelkit.coco_detector:CocoDetector",
    "mask_rcnn": "services.modelkit.segmenter:Segmenter",
    "keypoint_rcnn": "services.modelkit.keypointer:Keypointer",
}


def implementation_class(config: dict):
    params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
    name = params.get("implementation", "")
    if name not in IMPLEMENTATIONS:
        raise ValueError(f"{config.get('name', '?')}: parameter 'implementation' is {name!r}; "
                         f"expected one of {sorted(IMPLEMENTATIONS)}")
    module, cls = IMPLEMENTATIONS[name].split(":")
    return getattr(importlib.import_module(module), cls)


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        self.model = implementation_class(json.loads(args["model_config"]))()
        self.model.initialize(args)

    def execute(self, requests):
        return self.model.execute(requests)

    def finalize(self) -> None:
        self.model.finalize()
