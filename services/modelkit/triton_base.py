"""Base class of the Triton Python-backend models (the `implementation` a config names).

Triton's dynamic batcher hands `execute` several requests at once; we concatenate their
inputs by name into one batch, hand it to `infer` and split the outputs back per request.
How a model runs the batch is its own: the torchvision models run it through the network
at once, the batch-1 ONNX graphs (NanoDet, MoveNet) item by item. Every response also
carries a PROVENANCE string (JSON: architecture, weights kind and source) so the
services can tell callers which weights produced each label.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Generic

import numpy as np
import torch

from services.modelkit.contract import PROVENANCE, TensorSpec, check_config
from services.modelkit.parameters import P, parse_parameters
from services.modelkit.settings import ModelSettings
from services.modelkit.weights import WeightsInfo

log = logging.getLogger(__name__)


def _pb_utils():
    # Only importable inside Triton's Python-backend stub.
    import triton_python_backend_utils as pb_utils

    return pb_utils


class BatchedModel(Generic[P]):
    """Subclasses set `parameters_class` (their typed parameters) and implement
    `load(params, settings, device)` and `infer(inputs)`. Tensors are read and written
    by the names of services.modelkit.contract's specs."""

    #: The implementation's parameters; the config's are parsed into it at load.
    parameters_class: type[P]

    def initialize(self, args: dict) -> None:
        self.config = json.loads(args["model_config"])
        self.model_name = args["model_name"]
        # Fail the load with a message naming the tensor or parameter, not a request later.
        self.head = check_config(self.config)
        self.params: P = parse_parameters(self.parameters_class, self.config)
        if args.get("model_instance_kind") == "GPU":
            self.device = torch.device(f"cuda:{args['model_instance_device_id']}")
        else:
            self.device = torch.device("cpu")
            # Several instances each using every core fight; the config says how many.
            if self.params.num_threads > 0:
                torch.set_num_threads(self.params.num_threads)
        self._inputs = {i["name"]: i for i in self.config["input"]}
        self._outputs = {o["name"]: o for o in self.config["output"]}
        started = time.perf_counter()
        self.weights: WeightsInfo = self.load(self.params, ModelSettings(), self.device)
        self._provenance = json.dumps(self.weights.as_dict()).encode()
        self._log(
            f"{self.model_name}: loaded {self.weights.architecture} with {self.weights.kind} "
            f"weights ({self.weights.source}) on {self.device} in "
            f"{time.perf_counter() - started:.1f}s",
            warn=self.weights.kind == "random",
        )

    def _log(self, message: str, warn: bool = False) -> None:
        try:
            logger = _pb_utils().Logger
            (logger.log_warn if warn else logger.log_info)(message)
        except Exception:  # outside Triton (unit tests)
            log.log(logging.WARNING if warn else logging.INFO, message)

    # -- to implement -------------------------------------------------------
    def load(self, params: P, settings: ModelSettings, device: torch.device) -> WeightsInfo:
        raise NotImplementedError

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run a whole batch: every input and output (by tensor name) has the batch as
        first axis."""
        raise NotImplementedError

    # -- the config's shapes, by tensor -------------------------------------------
    def input_dims(self, tensor: TensorSpec) -> list[int]:
        return [int(d) for d in self._inputs[tensor.name]["dims"]]

    def output_dims(self, tensor: TensorSpec) -> list[int]:
        return [int(d) for d in self._outputs[tensor.name]["dims"]]

    # -- Triton entry points --------------------------------------------------
    def execute(self, requests):
        pb_utils = _pb_utils()
        try:
            per_request = [
                {n: pb_utils.get_input_tensor_by_name(r, n).as_numpy() for n in self._inputs}
                for r in requests
            ]
            first = next(iter(self._inputs))  # every input has the batch axis first
            sizes = [len(inputs[first]) for inputs in per_request]
            batch = {n: np.concatenate([p[n] for p in per_request]) for n in self._inputs}
            with torch.inference_mode():
                results = self.infer(batch)
            total = sum(sizes)
            results[PROVENANCE.name] = np.array([[self._provenance]] * total, dtype=object)
        except Exception as exc:  # answer every request; never take the stub down
            self._log(f"{self.model_name}: inference failed: {exc!r}", warn=True)
            error = pb_utils.TritonError(f"{self.model_name} inference failed: {exc}")
            return [pb_utils.InferenceResponse(error=error) for _ in requests]

        responses, start = [], 0
        for size in sizes:
            tensors = [
                pb_utils.Tensor(name, value[start : start + size]) for name, value in results.items()
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start += size
        return responses

    def finalize(self) -> None:
        self._log(f"{self.model_name}: unloading")


def pad_rows(rows: np.ndarray, length: int, fill: float = 0) -> np.ndarray:
    """Pad (or cut) the first axis to `length`, so outputs have fixed shapes for batching."""
    out = np.full((length, *rows.shape[1:]), fill, dtype=rows.dtype)
    n = min(length, len(rows))
    out[:n] = rows[:n]
    return out
