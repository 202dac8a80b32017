"""The image bytes a process holds for the calls in flight, so that the admission count
alone (64 calls) cannot let a handful of large images take it past its pod's memory
limit. A model service counts each request's image, from the moment it is parsed until
the call ends (it waits for the decode budget, then decodes, holding it). The router
counts an image once parsed plus about three copies per task it fans out to (the
downstream request, its serialized form, gRPC's send buffer): a 20 MB image asking for
four tasks holds ~260 MB until the services answer."""
from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from prelabel.core.errors import ResourceExhausted
from services.common.decode_budget import release_memory

#: Copies of the image one downstream call holds at once.
COPIES_PER_TASK = 3


def image_cost(image_bytes: int, tasks: int) -> int:
    """The router's cost of an image fanned out to `tasks` services."""
    return image_bytes * (1 + COPIES_PER_TASK * tasks)


#: Image bytes that must have passed through an emptied budget before it trims the heap.
TRIM_AFTER_BYTES = 32 * 1024 * 1024
#: At most one trim this often (malloc_trim walks the heap: milliseconds).
TRIM_EVERY_S = 1.0


class ImageBytesBudget:
    """Also gives memory back after a burst: when the last call in flight ends, having held
    TRIM_AFTER_BYTES or more since the last trim, the heap's free memory goes back to the OS
    (the router kept 257-515 MB after 32 concurrent 20 MB calls, 74 MB idle; ~100-140 MB now)."""

    def __init__(self, max_bytes: int, retry_after_ms: int):
        self.max_bytes = max_bytes
        self.retry_after_ms = retry_after_ms
        self.in_use = 0
        self._held_since_trim = 0
        self._trimmed_at = 0.0

    @contextlib.contextmanager
    def hold(self, cost: int) -> Iterator[None]:
        """Hold `cost` bytes for the block; RESOURCE_EXHAUSTED (overload, with a retry hint)
        when they do not fit beside the calls in flight (a call alone always fits)."""
        if self.in_use and self.in_use + cost > self.max_bytes:
            raise ResourceExhausted(f"server busy: {self.in_use >> 20} MiB of images in flight "
                                    f"(limit {self.max_bytes >> 20} MiB)", retry_after_ms=self.retry_after_ms)
        self.in_use += cost
        self._held_since_trim += cost
        try:
            yield
        finally:
            self.in_use -= cost
            if not self.in_use:
                self._trim_after_burst()

    def _trim_after_burst(self) -> None:
        now = time.monotonic()
        if self._held_since_trim >= TRIM_AFTER_BYTES and now - self._trimmed_at >= TRIM_EVERY_S:
            self._held_since_trim, self._trimmed_at = 0, now
            release_memory()
