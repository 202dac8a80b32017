"""The image bytes the router holds for the calls in flight. A call costs its image once
parsed plus about three copies per task it fans out to (the downstream request, its
serialized form, gRPC's send buffer): a 20 MB image asking for four tasks holds ~260 MB
until the services answer, so the admission count alone (64 calls) would let a handful
of large images take the router past its pod's memory limit."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

from prelabel.core.errors import ResourceExhausted

#: Copies of the image one downstream call holds at once.
COPIES_PER_TASK = 3


def image_cost(image_bytes: int, tasks: int) -> int:
    return image_bytes * (1 + COPIES_PER_TASK * tasks)


class ImageBytesBudget:
    def __init__(self, max_bytes: int, retry_after_ms: int):
        self.max_bytes = max_bytes
        self.retry_after_ms = retry_after_ms
        self.in_use = 0

    @contextlib.contextmanager
    def hold(self, cost: int) -> Iterator[None]:
        """Hold `cost` bytes for the block; RESOURCE_EXHAUSTED (overload, with a retry hint)
        when they do not fit beside the calls in flight (a call alone always fits)."""
        if self.in_use and self.in_use + cost > self.max_bytes:
            raise ResourceExhausted(f"server busy: {self.in_use >> 20} MiB of images in flight "
                                    f"(limit {self.max_bytes >> 20} MiB)", retry_after_ms=self.retry_after_ms)
        self.in_use += cost
        try:
            yield
        finally:
            self.in_use -= cost
