"""Async Triton client: model specs from Triton's own config, inference under the
caller's deadline, and one place that turns Triton errors into domain errors."""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import grpc
import numpy as np
import tritonclient.grpc.aio as triton_aio
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from prelabel.core.errors import DeadlineExceeded, PrelabelError, ResourceExhausted, Unavailable
from prelabel.core.labels import CUSTOM_LABEL_MAP, LabelMap, custom_categories
from prelabel.v1 import common_pb2
from services.modelkit.contract import (
    HEADS,
    IMAGE,
    NUMPY_DTYPES,
    PROVENANCE,
    ContractError,
    Head,
    check_config,
    string_parameters,
)

_WEIGHTS = {
    "pretrained": common_pb2.WEIGHTS_PRETRAINED,
    "custom": common_pb2.WEIGHTS_CUSTOM,
    "random": common_pb2.WEIGHTS_RANDOM,
}

# Triton priority levels (see dynamic_batching.priority_levels in the configs).
TRITON_PRIORITY = {
    common_pb2.PRIORITY_UNSPECIFIED: 1,
    common_pb2.PRIORITY_INTERACTIVE: 1,
    common_pb2.PRIORITY_BULK: 2,
}


# Replaces tritonclient's defaults, so the unlimited message sizes are restated.
# A short reconnect backoff bounds recovery after Triton restarts (gRPC's default
# backoff grows to 2 minutes).
CHANNEL_ARGS = [
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


@dataclass(frozen=True)
class ModelSpec:
    """What a service needs to know about a Triton model, read from its config."""

    name: str
    head: str  # the contract head its config implements
    inputs: dict[str, list[int]]  # name -> dims without the batch axis
    input_dtypes: dict[str, str]  # name -> numpy dtype name
    outputs: list[str]
    max_batch_size: int
    parameters: dict[str, str]

    @classmethod
    def from_config(cls, cfg: dict) -> ModelSpec:
        """The spec of a config (Triton's JSON form) that meets its contract head
        (ContractError otherwise)."""
        head = check_config(cfg)
        return cls(
            name=cfg["name"],
            head=head.name,
            inputs={i["name"]: [int(d) for d in i["dims"]] for i in cfg["input"]},
            input_dtypes={i["name"]: NUMPY_DTYPES[i["data_type"]] for i in cfg["input"]},
            outputs=[o["name"] for o in cfg["output"]],
            max_batch_size=int(cfg.get("max_batch_size", 0)),
            parameters=string_parameters(cfg),
        )

    @property
    def image_size(self) -> tuple[int, int]:
        """(width, height) of the IMAGE input."""
        h, w, _ = self.inputs[IMAGE.name]
        return w, h

    @property
    def contract_head(self) -> Head:
        return HEADS[self.head]

    @property
    def prompt_capacity(self) -> int:
        """Prompts one inference takes (the P rows of its prompt tensors); 0 for a model
        that takes none."""
        kinds = self.contract_head.prompts
        return self.inputs[kinds[0].tensor.name][0] if kinds else 0

    @property
    def label_map(self) -> LabelMap:
        """The label map's name, or for a custom vocabulary (a user's model) its categories
        from the config's `names` parameter."""
        name = self.parameters.get("label_map", "")
        return custom_categories(self.parameters.get("names", "")) if name == CUSTOM_LABEL_MAP else name

    def require_head(self, allowed: frozenset[str]) -> None:
        """The service can decode this model's outputs (its settings name the right model)."""
        if self.head not in allowed:
            raise Unavailable(f"{self.name} implements the {self.head} contract head; this service "
                              f"needs {' or '.join(sorted(allowed))} (check the service's model settings)")


@dataclass(frozen=True)
class InferOutput:
    outputs: dict[str, np.ndarray]  # by tensor name, with the batch axis
    provenance: common_pb2.Provenance


def provenance_from(model_name: str, model_version: str, raw: bytes) -> common_pb2.Provenance:
    info = json.loads(raw)
    return common_pb2.Provenance(
        model_name=model_name,
        model_version=model_version,
        architecture=info.get("architecture", ""),
        weights=_WEIGHTS.get(info.get("kind", ""), common_pb2.WEIGHTS_UNSPECIFIED),
        weights_source=info.get("source", ""),
        weights_sha256=info.get("sha256", ""),
        license=info.get("license", ""),
    )


#: What Triton's scheduler answers, with UNAVAILABLE, when a model's queue is full
#: (max_queue_size; "[request id: ...] " before it). Triton has no status code of its own
#: for overload, so this one text is what tells it apart from a Triton that cannot serve.
TRITON_QUEUE_FULL = "Exceeds maximum queue size"


def translate_error(exc: InferenceServerException, model: str) -> PrelabelError:
    """A Triton error as a domain error, by the gRPC status code tritonclient reports:
    the caller's own deadline or cancellation is DEADLINE_EXCEEDED; a full queue (Triton
    says UNAVAILABLE) is RESOURCE_EXHAUSTED with a retry hint; anything else (a dead
    Python stub is INTERNAL, a model not loaded NOT_FOUND) means Triton cannot serve this
    model now: UNAVAILABLE."""
    code = triton_code(exc)
    message = str(exc.message() or "")
    first_line = message.splitlines()[0] if message else ""
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return DeadlineExceeded(f"{model}: deadline exceeded waiting for Triton")
    if code == grpc.StatusCode.CANCELLED:
        return DeadlineExceeded(f"{model}: request cancelled")
    if code == grpc.StatusCode.UNAVAILABLE and message.rstrip().endswith(TRITON_QUEUE_FULL):
        return ResourceExhausted(f"{model}: Triton queue is full", retry_after_ms=200)
    if code == grpc.StatusCode.UNAVAILABLE:
        return Unavailable(f"{model}: Triton unavailable ({first_line or code.name})")
    if code == grpc.StatusCode.NOT_FOUND:
        return Unavailable(f"{model}: model not loaded in Triton")
    return Unavailable(f"{model}: Triton error {code.name if code else exc.status() or ''}: {first_line}")


def triton_code(exc: InferenceServerException) -> grpc.StatusCode | None:
    """The gRPC status code of a tritonclient error (its status() is the code's str(),
    "StatusCode.UNAVAILABLE"); None for an error raised by the client itself."""
    name = str(exc.status() or "").rpartition(".")[2]
    return grpc.StatusCode.__members__.get(name)


class TritonClient:
    """One aio channel to Triton, shared by every request of a process."""

    def __init__(self, url: str):
        self.url = url
        self._client = triton_aio.InferenceServerClient(url=url, channel_args=CHANNEL_ARGS)
        self._specs: dict[str, ModelSpec] = {}

    async def close(self) -> None:
        await self._client.close()

    async def spec(self, model: str, timeout_s: float = 5.0) -> ModelSpec:
        if model not in self._specs:
            try:
                cfg = (await self._client.get_model_config(model, as_json=True, client_timeout=timeout_s))["config"]
            except InferenceServerException as exc:
                raise translate_error(exc, model) from None
            try:
                self._specs[model] = ModelSpec.from_config(cfg)
            except ContractError as exc:
                raise Unavailable(f"{model}: its Triton config breaks the model contract: {exc}") from None
        return self._specs[model]

    async def ready(self, models: list[str], timeout_s: float = 2.0) -> bool:
        try:
            checks = [self._client.is_model_ready(m, client_timeout=timeout_s) for m in models]
            return all(await asyncio.gather(*checks))
        except (InferenceServerException, grpc.RpcError, asyncio.TimeoutError):
            return False

    async def infer(
        self,
        model: str,
        inputs: dict[str, np.ndarray],
        *,
        timeout_s: float | None,
        priority: common_pb2.Priority = common_pb2.PRIORITY_INTERACTIVE,
    ) -> InferOutput:
        """Run one request (inputs carry their batch axis). `timeout_s` is the time
        left of the caller's deadline; it becomes the gRPC deadline to Triton, and
        a cancelled caller cancels the Triton call with it."""
        if timeout_s is not None and timeout_s <= 0:
            raise DeadlineExceeded(f"{model}: no time left for inference")
        spec = await self.spec(model)
        triton_inputs = []
        for name, array in inputs.items():
            tensor = InferInput(name, list(array.shape), _triton_dtype(array))
            tensor.set_data_from_numpy(array)
            triton_inputs.append(tensor)
        outputs = [InferRequestedOutput(name) for name in spec.outputs]
        try:
            result = await self._client.infer(
                model, triton_inputs, outputs=outputs,
                priority=TRITON_PRIORITY.get(priority, 1),
                client_timeout=timeout_s,
            )
        except InferenceServerException as exc:
            raise translate_error(exc, model) from None
        arrays = {name: result.as_numpy(name) for name in spec.outputs}
        version = result.get_response().model_version
        raw = arrays.pop(PROVENANCE.name)
        return InferOutput(outputs=arrays, provenance=provenance_from(model, version, raw.reshape(-1)[0]))

    async def statistics(self, model: str) -> dict:
        return await self._client.get_inference_statistics(model, as_json=True)


def _triton_dtype(array: np.ndarray) -> str:
    """Triton's wire dtype of an input array (numpy objects -- text -- travel as BYTES)."""
    dtype = np_to_triton_dtype(array.dtype)
    if dtype is None:
        raise TypeError(f"no Triton dtype for numpy {array.dtype}")
    return dtype
