"""The router's interactive segmentation: Segmenter.SegmentClick and Segmenter.ClickSession
forwarded to the segmentation service unchanged (Segment itself stays with PreLabel:
UNIMPLEMENTED here), under the caller's deadline, its errors relayed by the status table.

Each forwarded call carries metadata `x-prelabel-image-key`, the SHA-256 of the image bytes
(a session: of its first image), so a proxy in front of several segmentation replicas can
hash by image and every click on one image reaches the replica that holds its state
(docs/operating.md, "Interactive segmentation").

A forwarded SegmentClick holds its image's copies in PreLabel's image-bytes budget
(services.common.image_bytes) until the service answers: 32 concurrent 20 MB clicks took
the router to 1.2-1.4 GB without it. ClickSessions are bounded in number instead
(`max_click_sessions`: a session lives for minutes of clicking, idle between clicks), and
the router keeps no session message once forwarded: 32 sessions opening with 20 MB images
took it to 1.7 GB before."""
from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator

from prelabel.core.errors import InvalidArgument, ResourceExhausted
from prelabel.v1 import segmentation_pb2, segmentation_pb2_grpc
from services.common.image_bytes import ImageBytesBudget, image_cost
from services.common.image_state import image_digest_async
from services.common.interceptors import next_message, time_left
from services.router.downstream import Downstream
from services.router.settings import RouterSettings

SERVICE_NAME = segmentation_pb2.DESCRIPTOR.services_by_name["Segmenter"].full_name
IMAGE_KEY = "x-prelabel-image-key"


class ClickForwarder(segmentation_pb2_grpc.SegmenterServicer):
    def __init__(self, settings: RouterSettings, down: Downstream, image_bytes: ImageBytesBudget):
        self.settings, self.down = settings, down
        self.image_bytes = image_bytes  # PreLabel's: a forwarded click holds its image's copies too
        self.sessions = OpenSessions(settings.max_click_sessions, settings.retry_after_ms)
        self.stub = segmentation_pb2_grpc.SegmenterStub(down.channels["segmentation"])

    async def _metadata(self, image_data: bytes) -> tuple[tuple[str, str], ...]:
        key = await image_digest_async(image_data, self.settings.inline_decode_max_bytes)
        return (*self.down.metadata, (IMAGE_KEY, key))

    async def SegmentClick(self, request: segmentation_pb2.ClickRequest, context) -> segmentation_pb2.ClickResponse:
        timeout = time_left(context, self.settings.default_timeout_s, self.settings.min_time_left_s)
        with self.image_bytes.hold(image_cost(len(request.image.data), tasks=1)):
            return await self.stub.SegmentClick(request, timeout=timeout,
                                                metadata=await self._metadata(request.image.data))

    async def ClickSession(self, request_iterator: AsyncIterator[segmentation_pb2.ClickSessionRequest],  # noqa: ARG002
                           context) -> AsyncIterator[segmentation_pb2.ClickResponse]:
        """The first message (which must be the start: its image names the session) opens
        the downstream session; the rest follow as they come, read with `context.read()`
        (services.common.interceptors.next_message says why)."""
        with self.sessions.open():
            first = await next_message(context)
            if first is None:
                return
            if first.WhichOneof("message") != "start":
                raise InvalidArgument("click", "arrived before any image: send a start message first")
            metadata = await self._metadata(first.start.image.data)

            async def forwarded():
                nonlocal first
                message, first = first, None
                while message is not None:
                    yield message
                    del message  # not held while the next is awaited
                    message = await next_message(context)

            call = self.stub.ClickSession(forwarded(), timeout=context.time_remaining(), metadata=metadata)
            try:
                async for reply in call:
                    yield reply
            finally:
                call.cancel()


class OpenSessions:
    """At most `max_sessions` ClickSessions forwarded at once; more are refused with
    RESOURCE_EXHAUSTED and a retry hint."""

    def __init__(self, max_sessions: int, retry_after_ms: int):
        self.max_sessions = max_sessions
        self.retry_after_ms = retry_after_ms
        self.open_now = 0

    @contextlib.contextmanager
    def open(self) -> Iterator[None]:
        if self.open_now >= self.max_sessions:
            raise ResourceExhausted(f"server busy: {self.open_now} click sessions open (limit {self.max_sessions}); "
                                    "SegmentClick needs no session", retry_after_ms=self.retry_after_ms)
        self.open_now += 1
        try:
            yield
        finally:
            self.open_now -= 1
