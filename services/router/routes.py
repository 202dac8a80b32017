"""One route per task (prelabel.core.tasks): the downstream request it builds from the
plan, the service it calls, and its part of the merged response."""
from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import grpc
from google.protobuf.message import Message

from prelabel.core.errors import InvalidArgument, PrelabelError, Unavailable
from prelabel.core.tasks import DETECT, FACES, KEYPOINTS, SEGMENT, TaskSpec
from prelabel.v1 import (
    common_pb2,
    detection_pb2,
    detection_pb2_grpc,
    keypoints_pb2,
    keypoints_pb2_grpc,
    prelabel_pb2,
    segmentation_pb2,
    segmentation_pb2_grpc,
)
from services.router.downstream import Downstream
from services.router.plan import Plan


async def require_serving(p: Plan, down: Downstream, service: str) -> None:
    """Cascade with nothing to prompt: the empty answer is only true if the service
    could have answered, so a dead one is reported UNAVAILABLE, not OK."""
    if not await down.is_serving(service, timeout_s=p.time_left()):
        raise Unavailable(f"{service} service is not serving")


def _common(p: Plan) -> dict:
    """The fields every downstream request takes from the router's request."""
    r = p.request
    kw = dict(image=r.image, review_policy=p.forwarded_policy, priority=p.priority)
    if r.HasField("score_threshold"):
        kw["score_threshold"] = r.score_threshold
    return kw


class Route(ABC):
    """How the router answers one task. `prompts` are the detector's boxes in cascade mode
    (None: the service runs automatically)."""

    task: TaskSpec

    @abstractmethod
    def rpc(self, channel: grpc.aio.Channel) -> Callable:
        """The method of the task's service, on `channel`."""

    @abstractmethod
    def request(self, p: Plan, prompts: Sequence[common_pb2.Detection] | None) -> Message:
        """The downstream request."""

    @abstractmethod
    def bare_request(self, image: common_pb2.Image) -> Message:
        """The request with the image alone, the service's defaults for the rest (what a
        caller of the service itself sends; the benchmark compares the router with it)."""

    @abstractmethod
    def empty_reply(self, image_id: str) -> Message:
        """The service's answer when there is nothing to prompt it with."""

    def labels(self, reply) -> Sequence:
        """The reply's labels (the messages of the task's response field)."""
        return reply.instances

    def prompts(self, boxes: Sequence[common_pb2.Detection]) -> list[common_pb2.Detection]:
        """The detector's boxes that prompt this task: all of them, or those of the task's
        one category (persons for person keypoints). All are sent: the request's
        max_labels bounds them, and the service splits what exceeds its model's capacity."""
        category = self.task.category
        return [d for d in boxes if category is None or d.category.name == category]

    def merge_into(self, out: prelabel_pb2.PreLabelResponse, reply) -> None:
        """The reply's labels into the merged response."""
        self.task.labels(out).extend(self.labels(reply))

    async def run(self, p: Plan, down: Downstream,
                  prompts: Sequence[common_pb2.Detection] | None = None) -> Message:
        if prompts is not None and not prompts:
            await require_serving(p, down, self.task.service)
            return self.empty_reply(p.request.image.image_id)
        rpc = self.rpc(down.channels[self.task.service])
        request = self.request(p, prompts)
        size = request.ByteSize()
        if size > down.max_request_bytes:
            raise InvalidArgument("request", f"the request for the {self.task.service} service would be "
                                             f"{size} bytes, over its limit of {down.max_request_bytes}: "
                                             "send a smaller image or fewer fields")
        return await rpc(request, timeout=p.time_left(), metadata=down.metadata)


class DetectRoute(Route):
    task = DETECT

    def request(self, p: Plan, prompts: Sequence[common_pb2.Detection] | None) -> Message:
        r = p.request
        return detection_pb2.DetectRequest(**_common(p), category_names=r.category_names,
                                           max_detections=r.max_labels)

    def rpc(self, channel: grpc.aio.Channel) -> Callable:
        return detection_pb2_grpc.DetectorStub(channel).Detect

    def bare_request(self, image: common_pb2.Image) -> Message:
        return detection_pb2.DetectRequest(image=image)

    def empty_reply(self, image_id: str) -> Message:
        return detection_pb2.DetectResponse(image_id=image_id)

    def labels(self, reply) -> Sequence:
        return reply.detections


class SegmentRoute(Route):
    task = SEGMENT

    def request(self, p: Plan, prompts: Sequence[common_pb2.Detection] | None) -> Message:
        r = p.request
        req = segmentation_pb2.SegmentRequest(**_common(p), category_names=r.category_names,
                                              max_instances=r.max_labels, include_polygons=r.include_polygons)
        req.prompts.extend(segmentation_pb2.BoxPrompt(box=d.box, category=d.category) for d in prompts or ())
        return req

    def rpc(self, channel: grpc.aio.Channel) -> Callable:
        return segmentation_pb2_grpc.SegmenterStub(channel).Segment

    def bare_request(self, image: common_pb2.Image) -> Message:
        return segmentation_pb2.SegmentRequest(image=image)

    def empty_reply(self, image_id: str) -> Message:
        return segmentation_pb2.SegmentResponse(image_id=image_id)


class KeypointRoute(Route):
    """Person keypoints and faces: one service, two keypoint kinds."""

    def __init__(self, task: TaskSpec, kind: keypoints_pb2.KeypointKind):
        self.task, self.kind = task, kind

    def request(self, p: Plan, prompts: Sequence[common_pb2.Detection] | None) -> Message:
        req = keypoints_pb2.KeypointRequest(**_common(p), kind=self.kind, max_instances=p.request.max_labels)
        req.prompt_boxes.extend(d.box for d in prompts or ())
        return req

    def rpc(self, channel: grpc.aio.Channel) -> Callable:
        return keypoints_pb2_grpc.KeypointDetectorStub(channel).DetectKeypoints

    def bare_request(self, image: common_pb2.Image) -> Message:
        return keypoints_pb2.KeypointRequest(image=image, kind=self.kind)

    def empty_reply(self, image_id: str) -> Message:
        return keypoints_pb2.KeypointResponse(image_id=image_id)

    def merge_into(self, out: prelabel_pb2.PreLabelResponse, reply) -> None:
        super().merge_into(out, reply)
        if reply.HasField("schema"):
            out.keypoint_schemas.append(reply.schema)


#: The route of every task of the registry (a test checks none is missing), by enum value.
ROUTES: dict[int, Route] = {route.task.enum: route for route in (
    DetectRoute(), SegmentRoute(),
    KeypointRoute(KEYPOINTS, keypoints_pb2.KEYPOINT_KIND_PERSON),
    KeypointRoute(FACES, keypoints_pb2.KEYPOINT_KIND_FACE),
)}


@dataclass(frozen=True)
class Outcome:
    """One task's answer: the service's reply, or the error the task ended with."""

    route: Route
    reply: Message | None
    error: BaseException | None
    seconds: float

    @property
    def task(self) -> TaskSpec:
        return self.route.task


async def attempt(route: Route, p: Plan, down: Downstream,
                  prompts: Sequence[common_pb2.Detection] | None = None) -> Outcome:
    """Run a route, timed; a failed call is an outcome, not an exception."""
    start = time.perf_counter()
    try:
        return Outcome(route, await route.run(p, down, prompts), None, time.perf_counter() - start)
    except (grpc.aio.AioRpcError, PrelabelError) as exc:
        return Outcome(route, None, exc, time.perf_counter() - start)
