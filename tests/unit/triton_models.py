"""Run a Triton Python-backend model class in-process, as Triton would initialise it
from model_repository/<model>/config.pbtxt (for unit tests of the model code)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2

from services.modelkit.entrypoint import implementation_class

REPO_ROOT = Path(__file__).resolve().parents[2]

#: The GPU profile's R-CNN configs with the light MobileNetV3 architectures (random
#: weights, 320 px, 32 rows) so their model bodies can be unit-tested on two cores.
RCNN_LITE = {
    "segmenter": "maskrcnn_mobilenet_v3_large_320_fpn_lite",
    "keypointer": "keypointrcnn_mobilenet_v3_large_320_fpn_lite",
}


def config_json(model: str, profile: str = "cpu") -> dict:
    """Triton's JSON form of model_repository/<model>/config.pbtxt (or configs/<profile>.pbtxt)."""
    folder = REPO_ROOT / "model_repository" / model
    path = folder / "config.pbtxt" if profile == "cpu" else folder / "configs" / f"{profile}.pbtxt"
    config = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    return json_format.MessageToDict(config, preserving_proto_field_name=True)


def rcnn_lite_config(model: str) -> dict:
    config = config_json(model, "gpu")
    config["parameters"]["architecture"] = {"string_value": RCNN_LITE[model]}
    for tensor in config["input"] + config["output"]:
        tensor["dims"] = [{"640": "320", "100": "32"}.get(str(d), str(d)) for d in tensor["dims"]]
    return config


def triton_args(model: str, config: dict | None = None) -> dict:
    """What Triton passes to `initialize` for a model config."""
    config = config if config is not None else config_json(model)
    return {"model_config": json.dumps(config), "model_name": model, "model_instance_kind": "CPU"}


def initialised(model_class, model: str, config: dict | None = None):
    """An instance of `model_class` initialised with random weights allowed (offline)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PRELABEL_ALLOW_RANDOM_WEIGHTS", "1")
        mp.delenv("PRELABEL_WEIGHTS_DIR", raising=False)
        instance = model_class()
        instance.initialize(triton_args(model, config))
    return instance


def cpu_model(model: str):
    """The CPU profile's implementation of `model`, initialised from its config.pbtxt
    (real weights from the verified model cache)."""
    config = config_json(model)
    instance = implementation_class(config)()
    instance.initialize(triton_args(model, config))
    return instance


def run(model, inputs: dict) -> dict:
    """One batch through the model body, as BatchedModel.execute runs it."""
    with torch.inference_mode():
        return model.infer(inputs)
