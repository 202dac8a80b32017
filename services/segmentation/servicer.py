"""Thin gRPC adapter: Segment runs the shared request path with the segmentation head
(box prompts: the SAM pair instead when one answers clicks, services.segmentation.sam_boxes);
SegmentClick and ClickSession run the interactive engine: GrabCut
(services.segmentation.interactive), or the SAM pair the click_model setting names
(services.segmentation.sam_clicks)."""
from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from prelabel.core.errors import DeadlineExceeded, InvalidArgument, ResourceExhausted
from prelabel.core.review import policy_from_proto
from prelabel.v1 import common_pb2, segmentation_pb2, segmentation_pb2_grpc
from services.common import requests as fields
from services.common.image_state import ImageStateCache
from services.common.interceptors import next_message, time_left
from services.common.task import TaskServicer
from services.modelkit.grabcut_clicks import DEFAULT_ITERATIONS, DEFAULT_PROBABILITY
from services.segmentation.clicks import read_click
from services.segmentation.interactive import ClickEngine, GrabCutClicks, GrabCutSettings, PreparedImage
from services.segmentation.sam_boxes import segment_boxes
from services.segmentation.sam_clicks import SamClicks
from services.segmentation.settings import SegmentationSettings


class SegmenterServicer(TaskServicer, segmentation_pb2_grpc.SegmenterServicer):
    def __init__(self, head, triton, metrics, image_bytes):
        super().__init__(head, triton, metrics, image_bytes)
        self.settings: SegmentationSettings = head.settings
        settings = self.settings
        state = ImageStateCache(settings.click_state_max_bytes, metrics)
        self.clicks: ClickEngine = (
            SamClicks(settings.click_model, settings, state, triton, metrics) if settings.click_model
            else GrabCutClicks(settings, state, metrics, self.grabcut_settings))
        self.open_sessions = 0

    async def Segment(self, request: segmentation_pb2.SegmentRequest, context) -> segmentation_pb2.SegmentResponse:
        if request.prompts and isinstance(self.clicks, SamClicks) and self.settings.sam_box_prompts:
            request, deadline = self.accept(request, context)
            return await segment_boxes(self.clicks, request, self.settings, self.metrics, deadline)
        return await self.serve(request, context)

    async def grabcut_settings(self) -> GrabCutSettings:
        """GrabCut's probability and iterations from the served segmenter's config (the CPU
        profile's), the defaults where it sets none (a GPU segmenter)."""
        spec = await self.triton.spec(self.settings.segmentation_model)
        return GrabCutSettings(
            probability=float(spec.parameters.get("grabcut_probability", DEFAULT_PROBABILITY)),
            iterations=int(spec.parameters.get("grabcut_iterations", DEFAULT_ITERATIONS)))

    async def SegmentClick(self, request: segmentation_pb2.ClickRequest, context) -> segmentation_pb2.ClickResponse:
        request, deadline = self.accept(request, context)
        image_id = fields.image_id(request.image.image_id)
        click = read_click(request.prompt, "prompt", self.settings.click_max_points)
        with self.metrics.timed("decode"):
            prepared = await self.clicks.prepare(request.image.data, deadline, request.priority)
        return await self.clicks.answer(prepared, click, image_id=image_id,
                                        policy=policy_from_proto(request.review_policy), deadline=deadline,
                                        priority=request.priority)

    async def ClickSession(self, request_iterator: AsyncIterator[segmentation_pb2.ClickSessionRequest],  # noqa: ARG002
                           context) -> AsyncIterator[segmentation_pb2.ClickResponse]:
        """At most click_max_sessions at once; one image at a time (held by the session
        itself, so eviction from the shared state never touches it), each click answered
        in order."""
        settings = self.settings
        if self.open_sessions >= settings.click_max_sessions:
            raise ResourceExhausted(f"{self.open_sessions} click sessions open (limit {settings.click_max_sessions})",
                                    retry_after_ms=settings.retry_after_ms)
        self.open_sessions += 1
        try:
            async for reply in self._session(context):
                yield reply
        finally:
            self.open_sessions -= 1

    async def _session(self, context) -> AsyncIterator[segmentation_pb2.ClickResponse]:
        settings = self.settings
        session_end = time.monotonic() + time_left(context, settings.click_session_max_s, settings.min_time_left_s)
        current: tuple[segmentation_pb2.ClickSessionStart, PreparedImage] | None = None
        while True:
            left = session_end - time.monotonic()
            try:  # context.read(), not the iterator: see next_message
                message = await asyncio.wait_for(next_message(context), min(settings.click_session_idle_s, left))
            except asyncio.TimeoutError:  # (not the builtin before Python 3.11)
                if left <= settings.click_session_idle_s:
                    raise DeadlineExceeded("the session's deadline passed") from None
                raise DeadlineExceeded(f"no message for {settings.click_session_idle_s:g} s; "
                                       "session closed") from None
            if message is None:
                return
            which = message.WhichOneof("message")
            if which == "start":
                start = self.policy.apply(message.start)
                fields.priority(start.priority, "start.priority")
                fields.image_id(start.image.image_id, "start.image.image_id")
                current = None  # the old image is let go before the new one is decoded
                deadline = min(session_end, time.monotonic() + settings.default_timeout_s)
                # Held like a unary call's image while it is prepared (RESOURCE_EXHAUSTED with a
                # retry hint when the process holds too much; the budget trims after a burst).
                with self.image_bytes.hold(len(start.image.data)), self.metrics.timed("decode"):
                    prepared = await self.clicks.prepare(start.image.data, deadline, start.priority)
                # What the clicks need of the start, without its image: the session holds the
                # prepared state, and the start's 20 MB would stay with it (a protobuf
                # message frees its bytes only with the whole message).
                current = (segmentation_pb2.ClickSessionStart(
                    image=common_pb2.Image(image_id=start.image.image_id), review_policy=start.review_policy,
                    priority=start.priority), prepared)
                del start, message, prepared
            elif which == "click":
                if current is None:
                    raise InvalidArgument("click", "arrived before any image: send a start message first")
                start, prepared = current
                click = read_click(message.click, "click", settings.click_max_points)
                deadline = min(session_end, time.monotonic() + settings.default_timeout_s)
                yield await self.clicks.answer(prepared, click, image_id=start.image.image_id,
                                               policy=policy_from_proto(start.review_policy), deadline=deadline,
                                               priority=start.priority)
            else:
                raise InvalidArgument("message", "must be a start or a click")
