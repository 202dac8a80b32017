"""The one request path of the Triton-backed services (detection, segmentation,
keypoints): validate -> decode the image -> infer -> decode the outputs -> respond,
with the metrics of each stage.

Each task is a small `TaskHead` over plain dataclasses: it reads its request's options
(cheap checks, before any pixel is decoded), names the model and the contract heads that
model must implement (services.modelkit.contract), reads the prompt kinds it
understands into `Prompt`s, and turns the model's outputs into label messages.
Everything else happens here, once: image decoding and letterboxing, prompt checks and
tensors (services.common.prompts), the deadline, the Triton call (several when the
prompts are more than the model's prompt rows), dropping rejected drafts, uncertainty,
the response's common fields, metrics. Adding a task is one head; adding a model type is
one model folder whose config names a contract head.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from prelabel.core.review import ReviewPolicy
from prelabel.v1 import common_pb2
from services.common import requests as fields
from services.common.image_bytes import ImageBytesBudget
from services.common.image_state import ImageStateCache
from services.common.interceptors import time_left
from services.common.labeling import count_labels, keep_reviewed, make_detection, uncertainty_of
from services.common.letterbox import Letterbox
from services.common.metrics import Metrics
from services.common.preprocess import prepare_image_async
from services.common.prompts import Prompt, check_prompts, joined, placed, prompt_tensors, split, to_model
from services.common.served_policy import ServedPolicy
from services.common.settings import ServiceSettings
from services.common.triton_client import InferOutput, ModelSpec, TritonClient
from services.common.work import WorkBudget, run_bounded
from services.modelkit.contract import COUNT, IMAGE, PROMPT_BOXES, PromptKind, TensorSpec

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Ask:
    """A request as the skeleton needs it, after the head's cheap validation."""

    model: str
    task: str  # the `task` label of the metrics
    policy: ReviewPolicy
    options: Any = None  # the head's own options dataclass


@dataclass(frozen=True)
class Inference:
    """The model's answer to one request, with what a head needs to decode it."""

    request: Any
    ask: Ask
    spec: ModelSpec
    letterbox: Letterbox
    prompts: Sequence[Prompt]  # placed on the image (source pixels, clipped); empty = automatic mode
    result: InferOutput

    def output(self, tensor: TensorSpec) -> np.ndarray:
        """One output of the single image in the batch."""
        return self.result.outputs[tensor.name][0]

    def has_output(self, tensor: TensorSpec) -> bool:
        return tensor.name in self.result.outputs

    @property
    def count(self) -> int:
        """Valid rows of the padded outputs."""
        return int(self.result.outputs[COUNT.name][0][0])

    @property
    def boxes(self) -> list[Box]:
        """The prompt boxes, in prompt order (source pixels, clipped)."""
        boxes = []
        for p in self.prompts:
            x0, y0, x1, y1 = (float(v) for v in p.rows[PROMPT_BOXES])
            boxes.append((x0, y0, x1, y1))
        return boxes

    def detection(self, box, cat_id: int, name: str, score: float) -> common_pb2.Detection:
        """A Detection with this request's review decision and the model's provenance."""
        return make_detection(box, cat_id, name, score, self.ask.policy, self.result.provenance)


class TaskHead:
    """What one task adds to the skeleton. Subclasses set the class attributes and
    implement `ask`, `model_heads` and `decode`; the other hooks have defaults."""

    rpc: ClassVar[str]  # the RPC's name, for metrics
    response_type: ClassVar[Any]  # the response message class
    labels_field: ClassVar[str]  # the response's repeated field of labels
    #: The request's repeated field of prompts, if the task takes any.
    prompts_field: ClassVar[str] = ""
    #: The prompt kinds `prompts` reads from a request (a model head it calls takes them).
    prompt_kinds: ClassVar[tuple[PromptKind, ...]] = ()
    #: Decode in a worker thread that stops at the deadline (heavy decoding: masks).
    threaded: ClassVar[bool] = False

    def __init__(self, settings: ServiceSettings):
        self.settings = settings

    def ask(self, request) -> Ask:
        raise NotImplementedError

    def model_heads(self) -> dict[str, frozenset[str]]:
        """Every model this head may call -> the contract heads it must implement."""
        raise NotImplementedError

    def prompts(self, request, ask: Ask, spec: ModelSpec) -> list[Prompt]:
        """The request's prompts, of the kinds this task reads (contract.PROMPT_KINDS)."""
        return []

    def check_prompted_work(self, prompts: Sequence[Prompt]) -> None:
        """Bounds on the prompted work (prompts placed on the image), known before inference."""

    def budget(self, deadline: float) -> WorkBudget:
        return WorkBudget(deadline, max_polygon_vertices=0)

    def decode(self, inference: Inference, budget: WorkBudget) -> list:
        """The label messages, highest score first (automatic) or one per prompt."""
        raise NotImplementedError

    def detection_of(self, label) -> common_pb2.Detection:
        return label.detection

    def response_fields(self, ask: Ask) -> dict[str, Any]:
        return {}


async def infer(triton: TritonClient, spec: ModelSpec, image: np.ndarray, prompts: Sequence[Prompt], *,
                deadline: float, priority: common_pb2.Priority) -> InferOutput:
    """The model's answer to one image and its prompts (model-input pixels). Prompts beyond
    the model's prompt rows go in several inferences, sent at once under the same
    deadline (Triton batches them) and joined back in prompt order."""
    inputs = {IMAGE.name: image}
    if not spec.contract_head.prompts:
        return await triton.infer(spec.name, inputs, timeout_s=deadline - time.monotonic(), priority=priority)
    groups = split(prompts, spec.prompt_capacity)
    calls = [asyncio.ensure_future(triton.infer(spec.name, {**inputs, **prompt_tensors(group, spec)},
                                                timeout_s=deadline - time.monotonic(), priority=priority))
             for group in groups]
    try:
        results = await asyncio.gather(*calls)
    finally:
        for call in calls:  # one failed: the others' answers are of no use
            call.cancel()
    return joined(results, [len(g) for g in groups], spec.contract_head)


async def run_task(head: TaskHead, request, *, triton: TritonClient, metrics: Metrics,
                   timeout_s: float, image_state: ImageStateCache | None = None):
    deadline = time.monotonic() + timeout_s
    # Validate everything cheap before touching pixels or Triton.
    ask = head.ask(request)
    image_id = fields.image_id(request.image.image_id)
    spec = await triton.spec(ask.model)
    spec.require_head(head.model_heads()[ask.model])
    prompts = head.prompts(request, ask, spec)
    check_prompts(prompts, spec, head.prompts_field, head.settings.max_prompts)

    metrics.payload.labels(metrics.service, head.rpc).observe(len(request.image.data))
    with metrics.timed("decode"):
        prepared = await prepare_image_async(request.image.data, spec.image_size, head.settings, image_state)
    lb = prepared.letterbox
    prompts = [placed(p, lb.src_w, lb.src_h) for p in prompts]
    head.check_prompted_work(prompts)
    with metrics.timed("triton"):
        result = await infer(triton, spec, prepared.tensor, [to_model(p, lb) for p in prompts],
                             deadline=deadline, priority=request.priority)
    inference = Inference(request, ask, spec, lb, prompts, result)
    with metrics.timed("postprocess"):
        budget = head.budget(deadline)
        if head.threaded:
            drafts = await run_bounded(head.decode, inference, budget=budget)
        else:
            drafts = head.decode(inference, budget)
        response = respond(head, inference, drafts, image_id, prepared.size_proto)
    count_labels(metrics, ask.task, ask.model, [head.detection_of(d) for d in getattr(response, head.labels_field)])
    return response


def respond(head: TaskHead, inference: Inference, drafts: list, image_id: str,
            image_size: common_pb2.ImageSize):
    """The response: drafts without the rejected ones (unless asked for), and the image's
    uncertainty over all of them."""
    ask = inference.ask
    # Prompted labels answer the caller's prompts one to one: never dropped.
    kept = drafts if inference.prompts else keep_reviewed(drafts, ask.policy, detection_of=head.detection_of)
    return head.response_type(
        image_id=image_id,
        image_size=image_size,
        provenance=inference.result.provenance,
        uncertainty=uncertainty_of([head.detection_of(d) for d in drafts], ask.policy),
        **{head.labels_field: kept},
        **head.response_fields(ask),
    )


class TaskServicer:
    """The servicer half every task shares: the call's deadline, the served review-policy
    file and the priority check, then `run_task`. A task's servicer subclasses this and
    its generated base, and its RPC method calls `serve`."""

    def __init__(self, head: TaskHead, triton: TritonClient, metrics: Metrics, image_bytes: ImageBytesBudget):
        self.head, self.triton, self.metrics = head, triton, metrics
        # The process's (its unary calls hold their images through the app's interceptor);
        # for what a servicer reads itself, e.g. a click session's images.
        self.image_bytes = image_bytes
        self.policy = ServedPolicy.from_settings(head.settings, metrics)
        self.image_state = ImageStateCache(head.settings.image_state_max_bytes, metrics)

    def accept(self, request, context) -> tuple[Any, float]:
        """What every RPC of a task does first: its deadline (time.monotonic(); the
        caller's, else default_timeout_s), the request with its effective review policy,
        its priority checked."""
        settings = self.head.settings
        deadline = time.monotonic() + time_left(context, settings.default_timeout_s, settings.min_time_left_s)
        request = self.policy.apply(request)
        fields.priority(request.priority)
        return request, deadline

    async def serve(self, request, context):
        request, deadline = self.accept(request, context)
        return await run_task(self.head, request, triton=self.triton, metrics=self.metrics,
                              timeout_s=deadline - time.monotonic(), image_state=self.image_state)
