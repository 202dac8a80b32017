"""Base class for Triton Python-backend models that batch for real.

Triton's dynamic batcher hands `execute` several requests at once; we concatenate
their inputs, run the network once and split the outputs back per request. Every
response also carries a PROVENANCE string (JSON: architecture, weights kind and
source) so the services can tell callers which weights produced each label.
"""
from __future__ import annotations

import json
import logging
import time

import numpy as np
import torch

from services.modelkit.contract import check_config
from services.modelkit.settings import ModelSettings
from services.modelkit.weights import WeightsInfo

log = logging.getLogger(__name__)


def _pb_utils():
    # Only importable inside Triton's Python-backend stub.
    import triton_python_backend_utils as pb_utils

    return pb_utils


class BatchedModel:
    """Subclasses implement `load(params, settings, device)` and `infer(inputs)`."""

    #: Output carrying the provenance JSON, one string per batch item.
    provenance_output = "PROVENANCE"

    def initialize(self, args: dict) -> None:
        self.config = json.loads(args["model_config"])
        self.model_name = args["model_name"]
        # Fail the load with a message naming the tensor, not a request later.
        self.head = check_config(self.config)
        self.params = {
            key: value.get("string_value", "")
            for key, value in self.config.get("parameters", {}).items()
        }
        if args.get("model_instance_kind") == "GPU":
            self.device = torch.device(f"cuda:{args['model_instance_device_id']}")
        else:
            self.device = torch.device("cpu")
            # Several instances each using every core fight; the config says how many.
            threads = int(self.params.get("num_threads", "0") or 0)
            if threads > 0:
                torch.set_num_threads(threads)
        self.input_names = [i["name"] for i in self.config["input"]]
        self.outputs = {o["name"]: o for o in self.config["output"]}
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
    def load(self, params: dict[str, str], settings: ModelSettings, device: torch.device) -> WeightsInfo:
        raise NotImplementedError

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run a whole batch: every input and output has the batch as first axis."""
        raise NotImplementedError

    # -- Triton entry points --------------------------------------------------
    def output_dims(self, name: str) -> list[int]:
        return [int(d) for d in self.outputs[name]["dims"]]

    def execute(self, requests):
        pb_utils = _pb_utils()
        try:
            per_request = [
                {n: pb_utils.get_input_tensor_by_name(r, n).as_numpy() for n in self.input_names}
                for r in requests
            ]
            sizes = [len(inputs[self.input_names[0]]) for inputs in per_request]
            batch = {n: np.concatenate([p[n] for p in per_request]) for n in self.input_names}
            with torch.inference_mode():
                results = self.infer(batch)
            total = sum(sizes)
            results[self.provenance_output] = np.array([[self._provenance]] * total, dtype=object)
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
