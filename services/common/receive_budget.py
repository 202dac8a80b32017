"""Memory for requests being received: gRPC buffers a unary request whole before its
handler runs, Python copies the buffer and parses it, so a call at the 20 MiB cap costs
~2.3x its size (measured: ~47 MB each, 24 more concurrent calls +1.1 GB) before the
servicer can look at it. No size is known on the call's metadata, so each call reserves
the worst case (the receive limit x RECEIVE_COPIES) *before* gRPC reads its message, and
gives it back once the message is parsed (the router's image-bytes budget then counts
the image itself).

A call that finds no room waits, its bytes held back by HTTP/2 flow control (no BDP
probing: a waiting call has tens of KB buffered), up to `wait_s` or its deadline, then
RESOURCE_EXHAUSTED with a retry hint. Waiting, not refusing at once: a reservation lasts
only while a message is received and parsed (milliseconds on a fast link; a slow
uploader's whole upload, at most its deadline), so a small call queued behind big ones
gets through shortly, where refusing would turn away every call that arrives during a
burst of large ones.

A stream's messages are read one at a time under the same budget (PreLabelStream, each
read reserved like a unary call's): a stream waiting for its next message holds its
reservation, so one that sends nothing while others wait is ended by its servicer
(`waiting` says when), never left holding room others need.

Chosen over gRPC's own options: `maximum_concurrent_rpcs` counts calls whatever their
size and counts idle streams too (issue 21, item 1), and an HTTP/2 window opens to the
whole message once its read starts, so windows cannot bound many calls at once; what
they can do is hold a call's bytes back until it is its turn, which is how this budget
uses them."""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from prelabel.core.errors import ResourceExhausted
from services.common.settings import ServiceSettings

#: Copies of a request alive at once while it is received: gRPC's buffer, Python's bytes
#: of it, the parsed message (measured ~2.3x; the reservation takes the structural 3).
RECEIVE_COPIES = 3


class ReceiveBudget:
    """At most `max_bytes // call_bytes` requests received at once (at least one), the
    others waiting their turn in arrival order."""

    def __init__(self, max_bytes: int, call_bytes: int, wait_s: float, retry_after_ms: int):
        self.max_bytes = max_bytes
        self.call_bytes = call_bytes
        self.wait_s = wait_s
        self.retry_after_ms = retry_after_ms
        self.slots = max(1, max_bytes // call_bytes)
        self.receiving_now = 0
        self.waiting = 0  # calls waiting for room now: a stream holding room idle should give it up
        self._free = asyncio.Semaphore(self.slots)  # FIFO: a waiter is not overtaken

    @classmethod
    def for_settings(cls, settings: ServiceSettings) -> ReceiveBudget:
        """The process's budget: max_receiving_bytes in reservations of the receive limit x
        RECEIVE_COPIES."""
        return cls(settings.max_receiving_bytes, settings.receive_limit_bytes * RECEIVE_COPIES,
                   settings.receive_wait_s, settings.retry_after_ms)

    @contextlib.asynccontextmanager
    async def receiving(self, wait_s: float | None) -> AsyncIterator[None]:
        """Reserve one call's worst case for the block, waiting up to `wait_s` (None: as
        long as it takes) for room; RESOURCE_EXHAUSTED (overload, with a retry hint) when
        none came."""
        self.waiting += 1
        try:
            async with asyncio.timeout(wait_s):
                await self._free.acquire()
        except TimeoutError:
            raise ResourceExhausted(
                f"server busy: {self.slots} large requests being received (limit "
                f"{self.max_bytes >> 20} MiB of receive buffers); waited {wait_s:.1f} s",
                retry_after_ms=self.retry_after_ms) from None
        finally:
            self.waiting -= 1
        self.receiving_now += 1
        try:
            yield
        finally:
            self.receiving_now -= 1
            self._free.release()
