"""Per-image state: a bounded, byte-sized LRU cache of what a task derives from an
image, keyed by the image's content.

A key is (SHA-256 of the encoded image bytes, a kind the caller chooses): the kind
names what was derived and how, e.g. "letterbox:512x512" for the decoded, letterboxed
model input (services.common.preprocess) or an encoder model's name for its image
embedding. Two requests carrying the same bytes find the same entries, whichever
client sent them; nothing is trusted from the caller but the bytes.

Values are any object the caller treats as immutable (numpy arrays made read-only), with
a size in bytes the caller states (arrays: `nbytes`). The sum of the sizes stays at or
under `max_bytes`: least recently used entries are evicted first, and an entry larger
than the bound is never cached. `max_bytes` 0 disables the cache (nothing is hashed,
stored or counted).

`get_or_compute` is the call a task makes: concurrent misses for one key run the
computation once and every caller gets its result (or its exception; a failure is not
cached). The computation outlives a caller that is cancelled, so the others still get it.
It runs on the event loop; `get` and `put` may also be called from worker threads.

The interactive segmentation keeps its per-image state here: the GrabCut engine its
downscaled image (services/segmentation/interactive.py), the SAM engine the image
embedding, computed with one Triton call on the first click and reused by later clicks on
the same bytes (services/segmentation/sam_clicks.py, kind "sam-embedding:<pair>"):

    key = StateKey(await image_digest_async(data, settings.inline_decode_max_bytes), self.kind)
    image = await self.state.get_or_compute(key, lambda: self._encode(data, deadline),
                                            size_of=lambda image: image.nbytes)

where `_encode` returns the embedding (a read-only array) with the image's size. The cache is per process: one
image's interactive requests must reach the same replica (the router's job) to find its
embedding.
"""
from __future__ import annotations

import asyncio
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import numpy as np

from services.common.metrics import Metrics

T = TypeVar("T")
Outcome = Literal["hits", "misses", "evictions"]


@dataclass(frozen=True)
class StateKey:
    image: str  # SHA-256 of the encoded image bytes, hex
    kind: str  # what was derived from it, e.g. "letterbox:512x512" or a model name


@dataclass(frozen=True)
class _Entry:
    value: Any
    nbytes: int


def image_digest(data: bytes) -> str:
    """The image part of a StateKey."""
    return hashlib.sha256(data).hexdigest()


async def image_digest_async(data: bytes, inline_max_bytes: int) -> str:
    """image_digest off the event loop for large images (~0.75 ms per MB; hashlib
    releases the GIL), on it for small ones, where a thread hop costs more."""
    if len(data) <= inline_max_bytes:
        return image_digest(data)
    return await asyncio.to_thread(image_digest, data)


def read_only(array: np.ndarray) -> np.ndarray:
    """`array`, no longer writable: a cached array is shared by concurrent requests."""
    array.flags.writeable = False
    return array


class ImageStateCache:
    def __init__(self, max_bytes: int, metrics: Metrics | None = None):
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self.metrics = metrics
        self._counters = {} if metrics is None else {
            "hits": metrics.image_state_hits, "misses": metrics.image_state_misses,
            "evictions": metrics.image_state_evictions}
        self._lock = threading.Lock()
        self._entries: OrderedDict[StateKey, _Entry] = OrderedDict()  # least recently used first
        self._bytes = 0
        self._bytes_by_kind: dict[str, int] = {}
        self._computing: dict[StateKey, asyncio.Future] = {}  # event-loop side only

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    @property
    def bytes_held(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: StateKey) -> bool:
        """Whether `key` is held (does not touch its recency or the metrics)."""
        return key in self._entries

    def get(self, key: StateKey) -> Any | None:
        """The value held for `key` (now the most recently used), or None; counted as a
        hit or a miss."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
        self._count("hits" if entry is not None else "misses", key.kind)
        return entry.value if entry is not None else None

    def put(self, key: StateKey, value: Any, nbytes: int) -> bool:
        """Hold `value` (immutable, `nbytes` large) under `key`, evicting least recently
        used entries to stay within max_bytes. False when not cached: the cache is
        disabled or the value alone exceeds the bound."""
        if nbytes < 0:
            raise ValueError(f"nbytes must be >= 0, got {nbytes}")
        if not self.enabled or nbytes > self.max_bytes:
            return False
        evicted: list[StateKey] = []
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._account(key.kind, -old.nbytes)
            while self._bytes + nbytes > self.max_bytes:
                gone, entry = self._entries.popitem(last=False)
                self._account(gone.kind, -entry.nbytes)
                evicted.append(gone)
            self._entries[key] = _Entry(value, nbytes)
            self._account(key.kind, nbytes)
            for gone in evicted:
                self._count("evictions", gone.kind)
        return True

    async def get_or_compute(self, key: StateKey, compute: Callable[[], Awaitable[T]],
                             size_of: Callable[[T], int]) -> T:
        """The value for `key`: held, being computed for another caller (awaited), or
        computed now by `compute()` and held if it fits. A caller that finds the value
        held or in progress counts a hit; the one that computes counts a miss (so misses
        count computations)."""
        if not self.enabled:
            return await compute()
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
        if entry is not None:
            self._count("hits", key.kind)
            return entry.value
        running = self._computing.get(key)
        if running is None:
            self._count("misses", key.kind)
            running = asyncio.ensure_future(compute())
            self._computing[key] = running
            # Added before any waiter's callback: the value is held before they resume.
            running.add_done_callback(lambda done: self._computed(key, done, size_of))
        else:
            self._count("hits", key.kind)
        # Shielded: one caller's cancellation must not cancel the others' computation.
        return await asyncio.shield(running)

    def _computed(self, key: StateKey, done: asyncio.Future, size_of: Callable[[Any], int]) -> None:
        if self._computing.get(key) is done:
            del self._computing[key]
        if done.cancelled() or done.exception() is not None:  # retrieved: no "never retrieved" warning
            return
        value = done.result()
        self.put(key, value, size_of(value))

    def _account(self, kind: str, delta: int) -> None:
        """Under the lock: the byte totals and their gauge."""
        self._bytes += delta
        held = self._bytes_by_kind[kind] = self._bytes_by_kind.get(kind, 0) + delta
        if self.metrics is not None:
            self.metrics.image_state_bytes.labels(self.metrics.service, kind).set(held)

    def _count(self, outcome: Outcome, kind: str) -> None:
        if self.metrics is not None:
            self._counters[outcome].labels(self.metrics.service, kind).inc()
