"""The image bytes a process holds for the calls in flight, so that the admission count
alone (64 calls) cannot let a handful of large images take it past its pod's memory
limit. A model service counts each request's image, from the moment it is parsed until
the call ends (it waits for the decode budget, then decodes, holding it). The router
counts an image once parsed plus about three copies per task it fans out to (the
downstream request, its serialized form, gRPC's send buffer): a 20 MB image asking for
four tasks holds ~260 MB until the services answer."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

from prelabel.core.errors import ResourceExhausted

#: Copies of the image one downstream call holds at once.
COPIES_PER_TASK = 3


def image_cost(image_bytes: int, tasks: int) -> int:
    """The router's cost of an image fanned out to `tasks` services."""
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
