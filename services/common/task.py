"""The one request path of the Triton-backed services (detection, segmentation,
keypoints): validate -> decode the image -> infer -> decode the outputs -> respond,
with the metrics of each stage.

Each task is a small `TaskHead` over plain dataclasses: it reads its request's options
(cheap checks, before any pixel is decoded), names the model and the contract heads that
model must implement (services.modelkit.contract), says where its prompt boxes are, and
turns the model's outputs into label messages. Everything else happens here, once:
image decoding and letterboxing, prompt checks and tensors, the deadline, the Triton
call, dropping rejected drafts, uncertainty, the response's common fields, metrics.
Adding a task is one head; adding a model type is one model folder whose config names
a contract head.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from prelabel.core.errors import InvalidArgument
from prelabel.core.review import ReviewPolicy
from prelabel.v1 import common_pb2
from services.common import requests as fields
from services.common.image_state import ImageStateCache
from services.common.interceptors import time_left
from services.common.labeling import (
    check_prompt_box_shape,
    check_prompt_count,
    count_labels,
    keep_reviewed,
    make_detection,
    prompt_tensors,
    uncertainty_of,
)
from services.common.letterbox import Letterbox, boxes_to_model
from services.common.metrics import Metrics
from services.common.preprocess import prepare_image_async
from services.common.served_policy import ServedPolicy
from services.common.settings import ServiceSettings
from services.common.triton_client import InferOutput, ModelSpec, TritonClient
from services.common.work import WorkBudget, run_bounded

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Ask:
    """A request as the skeleton needs it, after the head's cheap validation."""

    model: str
    task: str  # the `task` label of the metrics
    policy: ReviewPolicy
    options: Any = None  # the head's own options dataclass


@dataclass(frozen=True)
class Prompt:
    box: common_pb2.Box
    field: str  # names the box in errors, e.g. "prompts[2].box"
    label: int = 0  # category id asked of the model; 0 lets the model choose


@dataclass(frozen=True)
class Inference:
    """The model's answer to one request, with what a head needs to decode it."""

    request: Any
    ask: Ask
    spec: ModelSpec
    letterbox: Letterbox
    boxes: list[Box]  # prompt boxes in source pixels, clipped; [] = automatic mode
    result: InferOutput

    def output(self, name: str) -> np.ndarray:
        """One output of the single image in the batch."""
        return self.result.outputs[name][0]

    def has_output(self, name: str) -> bool:
        return name in self.result.outputs

    @property
    def count(self) -> int:
        """Valid rows of the padded outputs."""
        return int(self.result.outputs["COUNT"][0][0])

    def detection(self, box, cat_id: int, name: str, score: float) -> common_pb2.Detection:
        """A Detection with this request's review decision and the model's provenance."""
        return make_detection(box, cat_id, name, score, self.ask.policy, self.result.provenance)


class TaskHead:
    """What one task adds to the skeleton. Subclasses set the class attributes and
    implement `ask`, `model_heads` and `decode`; the other hooks have defaults."""

    rpc: ClassVar[str]  # the RPC's name, for metrics
    response_type: ClassVar[Any]  # the response message class
    labels_field: ClassVar[str]  # the response's repeated field of labels
    #: The request's repeated field of prompt boxes, if the task takes any.
    prompts_field: ClassVar[str] = ""
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
        return []

    def check_prompt_boxes(self, boxes: list[Box]) -> None:
        """Bounds on the prompted work, known before inference."""

    def budget(self, deadline: float) -> WorkBudget:
        return WorkBudget(deadline, max_polygon_vertices=0)

    def decode(self, inference: Inference, budget: WorkBudget) -> list:
        """The label messages, highest score first (automatic) or one per prompt."""
        raise NotImplementedError

    def detection_of(self, label) -> common_pb2.Detection:
        return label.detection

    def response_fields(self, ask: Ask) -> dict[str, Any]:
        return {}


def check_prompts(prompts: list[Prompt], spec: ModelSpec, field: str) -> None:
    """Everything about the prompts that needs no image."""
    if not prompts:
        return
    if "PROMPT_BOXES" not in spec.inputs:
        raise InvalidArgument(field, f"model {spec.name} takes no prompt boxes")
    check_prompt_count(len(prompts), spec.inputs["PROMPT_BOXES"][0], field)
    for p in prompts:
        check_prompt_box_shape(p.box, p.field)


async def run_task(head: TaskHead, request, *, triton: TritonClient, metrics: Metrics,
                   timeout_s: float, image_state: ImageStateCache | None = None):
    deadline = time.monotonic() + timeout_s
    # Validate everything cheap before touching pixels or Triton.
    ask = head.ask(request)
    image_id = fields.image_id(request.image.image_id)
    spec = await triton.spec(ask.model)
    spec.require_head(head.model_heads()[ask.model])
    prompts = head.prompts(request, ask, spec)
    check_prompts(prompts, spec, head.prompts_field)

    metrics.payload.labels(metrics.service, head.rpc).observe(len(request.image.data))
    with metrics.timed("decode"):
        prepared = await prepare_image_async(request.image.data, spec.image_size, head.settings, image_state)
    lb = prepared.letterbox
    boxes = [fields.box(p.box, p.field, lb.src_w, lb.src_h) for p in prompts]
    head.check_prompt_boxes(boxes)
    inputs = {"IMAGE": prepared.tensor}
    if "PROMPT_BOXES" in spec.inputs:
        labels = [p.label for p in prompts] if "PROMPT_LABELS" in spec.inputs else None
        inputs.update(prompt_tensors(boxes_to_model(np.asarray(boxes).reshape(-1, 4), lb),
                                     spec.inputs["PROMPT_BOXES"][0], labels=labels))
    with metrics.timed("triton"):
        result = await triton.infer(ask.model, inputs, timeout_s=deadline - time.monotonic(),
                                    priority=request.priority)
    inference = Inference(request, ask, spec, lb, boxes, result)
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
    # Prompted labels answer the caller's boxes one to one: never dropped.
    kept = drafts if inference.boxes else keep_reviewed(drafts, ask.policy, detection_of=head.detection_of)
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

    def __init__(self, head: TaskHead, triton: TritonClient, metrics: Metrics):
        self.head, self.triton, self.metrics = head, triton, metrics
        self.policy = ServedPolicy.from_settings(head.settings, metrics)
        self.image_state = ImageStateCache(head.settings.image_state_max_bytes, metrics)

    async def serve(self, request, context):
        settings = self.head.settings
        timeout_s = time_left(context, settings.default_timeout_s, settings.min_time_left_s)
        request = self.policy.apply(request)
        fields.priority(request.priority)
        return await run_task(self.head, request, triton=self.triton, metrics=self.metrics,
                              timeout_s=timeout_s, image_state=self.image_state)
