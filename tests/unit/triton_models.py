"""Run a Triton Python-backend model class in-process, as Triton would initialise it
from model_repository/<model>/config.pbtxt (for unit tests of the model code)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2

REPO_ROOT = Path(__file__).resolve().parents[2]


def triton_args(model: str) -> dict:
    """What Triton passes to `initialize` for model_repository/<model>/config.pbtxt."""
    config = text_format.Parse((REPO_ROOT / "model_repository" / model / "config.pbtxt").read_text(),
                               model_config_pb2.ModelConfig())
    as_json = json_format.MessageToDict(config, preserving_proto_field_name=True)
    return {"model_config": json.dumps(as_json), "model_name": model, "model_instance_kind": "CPU"}


def initialised(model_class, model: str):
    """An instance of `model_class` initialised with random weights allowed (offline)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PRELABEL_ALLOW_RANDOM_WEIGHTS", "1")
        mp.delenv("PRELABEL_WEIGHTS_DIR", raising=False)
        instance = model_class()
        instance.initialize(triton_args(model))
    return instance


def run(model, inputs: dict) -> dict:
    """One batch through the model body, as BatchedModel.execute runs it."""
    with torch.inference_mode():
        return model.infer(inputs)
