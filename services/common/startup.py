"""Start-up of a Triton-backed service: wait for its models, run one warm-up
inference each, and refuse to serve random weights where real ones are required."""
from __future__ import annotations

import asyncio
import logging
import time

import numpy as np

from prelabel.core.errors import PrelabelError
from prelabel.v1 import common_pb2
from services.common.triton_client import TritonClient

log = logging.getLogger(__name__)


class RandomWeightsRefused(RuntimeError):
    pass


async def wait_for_models(triton: TritonClient, models: list[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not await triton.ready(models):
        if time.monotonic() > deadline:
            raise TimeoutError(f"Triton at {triton.url} has not made {models} ready in {timeout_s:.0f}s")
        await asyncio.sleep(0.5)


async def check_model_heads(triton: TritonClient, model_heads: dict[str, frozenset[str]]) -> None:
    """Each model implements a contract head this service can decode (a setting that
    names, say, a detector as the keypoint model fails here, not at the first request)."""
    for model, allowed in model_heads.items():
        try:
            (await triton.spec(model)).require_head(allowed)
        except PrelabelError as exc:
            raise RuntimeError(f"start-up check of {model} failed: {exc.message}") from None


async def warm_up(triton: TritonClient, models: list[str], *, require_pretrained: bool,
                  timeout_s: float = 120.0) -> dict[str, common_pb2.Provenance]:
    """One inference per model on zeros (first calls are slow); returns provenance."""
    provenance = {}
    for model in models:
        try:
            spec = await triton.spec(model)
        except PrelabelError as exc:
            raise RuntimeError(f"start-up check of {model} failed: {exc.message}") from None
        inputs = {
            name: np.zeros((1, *dims), dtype=spec.input_dtypes[name])
            for name, dims in spec.inputs.items()
        }
        try:
            result = await triton.infer(model, inputs, timeout_s=timeout_s)
        except PrelabelError as exc:
            raise RuntimeError(f"warm-up of {model} failed: {exc.message}") from None
        provenance[model] = result.provenance
        if result.provenance.weights == common_pb2.WEIGHTS_RANDOM:
            if require_pretrained:
                raise RandomWeightsRefused(
                    f"{model} ({result.provenance.architecture}) has RANDOM weights and "
                    "PRELABEL_REQUIRE_PRETRAINED is set: provide real weights"
                )
            log.warning("!!! %s serves RANDOM weights: its labels are meaningless "
                        "(development only; responses say weights=random) !!!", model)
        else:
            log.info("%s: %s weights (%s)", model,
                     common_pb2.Weights.Name(result.provenance.weights), result.provenance.weights_source)
    return provenance
