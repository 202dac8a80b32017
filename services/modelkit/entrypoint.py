"""The one `TritonPythonModel` every model_repository/<model>/1/model.py exposes.

The implementation is named by import path in the config's `implementation` parameter,
`module:Class` (e.g. `services.modelkit.nanodet:NanoDetDetector`), and imported when the
model loads; there is no registry to edit. So a model's CPU profile (config.pbtxt) and
GPU profile (configs/gpu.pbtxt) can run different code behind the same head, and an ONNX
model never imports the torchvision R-CNN code or the reverse. The module may live
outside services.modelkit: Triton's Python backend puts the model folder and its version
folder on sys.path, so a model folder can carry its own module. The class must be a
`BatchedModel`.
"""
from __future__ import annotations

import importlib
import json

from services.modelkit.contract import string_parameters
from services.modelkit.parameters import ModelParameters, ParameterError
from services.modelkit.triton_base import BatchedModel

EXAMPLE = "services.modelkit.nanodet:NanoDetDetector"


def implementation_class(config: dict) -> type[BatchedModel]:
    """The class the config's `implementation` parameter names; ParameterError says why
    when it cannot be used."""
    model = config.get("name", "?")
    path = string_parameters(config).get("implementation", "")
    module_name, _, class_name = path.partition(":")
    if not module_name or not class_name:
        raise ParameterError(f"{model}: parameter 'implementation' is {path!r}; expected an import "
                             f"path 'module:Class', e.g. {EXAMPLE!r}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ParameterError(f"{model}: implementation {path!r}: cannot import {module_name!r} ({exc})") from exc
    cls = getattr(module, class_name, None)
    if cls is None:
        raise ParameterError(f"{model}: implementation {path!r}: module {module_name!r} has no {class_name!r}")
    if not (isinstance(cls, type) and issubclass(cls, BatchedModel)):
        raise ParameterError(f"{model}: implementation {path!r} is not a model class: it must subclass "
                             "services.modelkit.triton_base.BatchedModel")
    parameters = getattr(cls, "parameters_class", None)
    if not (isinstance(parameters, type) and issubclass(parameters, ModelParameters)):
        raise ParameterError(f"{model}: implementation {path!r} declares no parameters_class "
                             "(a services.modelkit.parameters.ModelParameters dataclass)")
    return cls


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        self.model = implementation_class(json.loads(args["model_config"]))()
        self.model.initialize(args)

    def execute(self, requests):
        return self.model.execute(requests)

    def finalize(self) -> None:
        self.model.finalize()
