"""Caller bytes -> validated, upright image -> letterboxed uint8 model input, reused
across requests on the same image when the process keeps per-image state."""
from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass

import numpy as np

from prelabel.v1 import common_pb2
from services.common.decode_budget import pixel_budget, release_memory
from services.common.image_state import ImageStateCache, StateKey, image_digest_async, read_only
from services.common.imaging import decode_image, open_image
from services.common.letterbox import Letterbox, letterbox_for, letterbox_image
from services.common.settings import ServiceSettings


@dataclass(frozen=True)
class PreparedImage:
    letterbox: Letterbox  # from the source size (after EXIF orientation) to the model input
    tensor: np.ndarray  # [1, H, W, 3] uint8, read-only: what Triton receives

    @property
    def size_proto(self) -> common_pb2.ImageSize:
        return common_pb2.ImageSize(width=self.letterbox.src_w, height=self.letterbox.src_h)

    @property
    def nbytes(self) -> int:
        return int(self.tensor.nbytes)


def prepare_image(data: bytes, input_size: tuple[int, int], settings: ServiceSettings,
                  field: str = "image.data", stop: threading.Event | None = None) -> PreparedImage:
    """Decode (at reduced scale when the model input is smaller) and letterbox.
    CPU-bound: call it in a worker thread; setting `stop` ends the decode early."""
    width, height = input_size
    decoded = decode_image(
        data, max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels,
        target_size=input_size, field=field, stop=stop,
    )
    lb = letterbox_for(decoded.width, decoded.height, width, height)
    tensor = np.zeros((1, height, width, 3), dtype=np.uint8)
    letterbox_image(decoded.image, lb, out=tensor[0])
    # Read-only: a prepared image may be shared by concurrent requests (image_state).
    return PreparedImage(letterbox=lb, tensor=read_only(tensor))


async def prepare_image_async(data: bytes, input_size: tuple[int, int], settings: ServiceSettings,
                              image_state: ImageStateCache | None = None,
                              field: str = "image.data") -> PreparedImage:
    """prepare_image off the event loop, except for small images: handing those to a
    worker thread costs more than decoding them (measured ~0.5 ms per request).
    With an enabled `image_state`, an image already prepared at this input size (same
    bytes, this process) is reused, and concurrent requests for it prepare it once."""

    async def prepare() -> PreparedImage:
        if len(data) <= settings.inline_decode_max_bytes:
            return prepare_image(data, input_size, settings, field)
        # The header only (a bomb is refused before it waits for budget), off the event
        # loop: a PNG's metadata chunks are inflated as it is read.
        image = await asyncio.to_thread(open_image, data, max_bytes=settings.max_image_bytes,
                                        max_pixels=settings.max_image_pixels, field=field)
        budget = pixel_budget(settings.max_decode_pixels_in_flight)
        return await budget.run(image.width * image.height, prepare_image_and_trim,
                                data, input_size, settings, field)

    if image_state is None or not image_state.enabled or len(data) > settings.max_image_bytes:
        return await prepare()  # (an oversize image is refused by prepare, never hashed)
    digest = await image_digest_async(data, settings.inline_decode_max_bytes)
    key = StateKey(digest, letterbox_kind(input_size))
    return await image_state.get_or_compute(key, prepare, size_of=lambda prepared: prepared.nbytes)


def letterbox_kind(input_size: tuple[int, int]) -> str:
    """The image_state kind of a prepared image: one per model input size."""
    width, height = input_size
    return f"letterbox:{width}x{height}"


def prepare_image_and_trim(data: bytes, input_size: tuple[int, int], settings: ServiceSettings,
                           field: str, stop: threading.Event) -> PreparedImage:
    """prepare_image, then the decoded pixels' memory goes back to the OS (a burst of large
    images must not leave the process at its peak)."""
    try:
        return prepare_image(data, input_size, settings, field, stop)
    finally:
        release_memory()
