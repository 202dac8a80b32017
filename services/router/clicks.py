"""The router's interactive segmentation: Segmenter.SegmentClick and Segmenter.ClickSession
forwarded to the segmentation service unchanged (Segment itself stays with PreLabel:
UNIMPLEMENTED here), under the caller's deadline, its errors relayed by the status table.

Each forwarded call carries metadata `x-prelabel-image-key`, the SHA-256 of the image bytes
(a session: of its first image), so a proxy in front of several segmentation replicas can
hash by image and every click on one image reaches the replica that holds its state
(docs/operating.md, "Interactive segmentation").

A forwarded SegmentClick holds its image's copies in PreLabel's image-bytes budget
(services.router.image_bytes) until the service answers: 32 concurrent 20 MB clicks took
the router to 1.2-1.4 GB without it. A ClickSession's images are not counted (a session lives
for minutes of clicking)."""
from __future__ import annotations

from collections.abc import AsyncIterator

from prelabel.core.errors import InvalidArgument
from prelabel.v1 import segmentation_pb2, segmentation_pb2_grpc
from services.common.image_state import image_digest_async
from services.common.interceptors import time_left
from services.router.downstream import Downstream
from services.router.image_bytes import ImageBytesBudget, image_cost
from services.router.settings import RouterSettings

SERVICE_NAME = segmentation_pb2.DESCRIPTOR.services_by_name["Segmenter"].full_name
IMAGE_KEY = "x-prelabel-image-key"


class ClickForwarder(segmentation_pb2_grpc.SegmenterServicer):
    def __init__(self, settings: RouterSettings, down: Downstream, image_bytes: ImageBytesBudget):
        self.settings, self.down = settings, down
        self.image_bytes = image_bytes  # PreLabel's: a forwarded click holds its image's copies too
        self.stub = segmentation_pb2_grpc.SegmenterStub(down.channels["segmentation"])

    async def _metadata(self, image_data: bytes) -> tuple[tuple[str, str], ...]:
        key = await image_digest_async(image_data, self.settings.inline_decode_max_bytes)
        return (*self.down.metadata, (IMAGE_KEY, key))

    async def SegmentClick(self, request: segmentation_pb2.ClickRequest, context) -> segmentation_pb2.ClickResponse:
        timeout = time_left(context, self.settings.default_timeout_s, self.settings.min_time_left_s)
        with self.image_bytes.hold(image_cost(len(request.image.data), tasks=1)):
            return await self.stub.SegmentClick(request, timeout=timeout,
                                                metadata=await self._metadata(request.image.data))

    async def ClickSession(self, request_iterator: AsyncIterator[segmentation_pb2.ClickSessionRequest],
                           context) -> AsyncIterator[segmentation_pb2.ClickResponse]:
        """The first message (which must be the start: its image names the session) opens
        the downstream session; the rest follow as they come."""
        messages = aiter(request_iterator)
        first = await anext(messages, None)
        if first is None:
            return
        if first.WhichOneof("message") != "start":
            raise InvalidArgument("click", "arrived before any image: send a start message first")

        async def forwarded():
            yield first
            async for message in messages:
                yield message

        call = self.stub.ClickSession(forwarded(), timeout=context.time_remaining(),
                                      metadata=await self._metadata(first.start.image.data))
        try:
            async for reply in call:
                yield reply
        finally:
            call.cancel()
