"""How many source pixels this process decodes at once, across requests: each image at
the pixel cap costs a few hundred MB while it is decoded, so eight at once would pass a
service pod's memory limit though each is within the caps. Images beyond the budget wait
(under their deadline) for those in flight; the pixels of a decode stay counted until its
thread ends, even when its caller was cancelled. After a decode the freed memory goes back
to the OS (glibc's malloc_trim)."""
from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import ctypes
import ctypes.util
import functools
import os
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: Threads that decode large images (small ones decode on the event loop).
_DECODE_THREADS = concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2,
                                                        thread_name_prefix="decode")


class PixelBudget:
    """Thread-safe: a decode thread gives its pixels back when it ends, whichever event
    loop (a test's, since closed) started it."""

    def __init__(self, max_pixels: int):
        self.max_pixels = max_pixels
        self.in_use = 0
        self._lock = threading.Lock()
        self._waiting: collections.deque[tuple[int, asyncio.Future]] = collections.deque()

    async def run(self, pixels: int, fn: Callable[..., T], *args) -> T:
        """`fn(*args, stop)` in a decode thread once `pixels` fit the budget (an image
        larger than the whole budget runs alone); `stop` (a threading.Event) is set when
        the caller is cancelled, for `fn` to end early."""
        pixels = min(pixels, self.max_pixels)
        await self._acquire(pixels)
        stop = threading.Event()
        try:
            work = _DECODE_THREADS.submit(functools.partial(fn, *args, stop))
        except BaseException:
            self._release(pixels)
            raise
        # Released when the thread ends, not when the caller stops waiting for it.
        work.add_done_callback(lambda _: self._release(pixels))
        try:
            return await asyncio.wrap_future(work)
        except asyncio.CancelledError:
            stop.set()
            raise

    async def _acquire(self, pixels: int) -> None:
        with self._lock:
            if not self._waiting and self.in_use + pixels <= self.max_pixels:
                self.in_use += pixels
                return
            entry = (pixels, asyncio.get_running_loop().create_future())
            self._waiting.append(entry)
        try:
            await entry[1]
        except asyncio.CancelledError:
            with self._lock:
                granted = entry not in self._waiting
                if not granted:
                    self._waiting.remove(entry)
            if granted:  # granted as it was cancelled: give the pixels back
                self._release(pixels)
            raise

    def _release(self, pixels: int) -> None:
        with self._lock:
            self.in_use -= pixels
            while self._waiting and self.in_use + self._waiting[0][0] <= self.max_pixels:
                granted, ready = self._waiting.popleft()
                try:
                    ready.get_loop().call_soon_threadsafe(_grant, ready)
                    self.in_use += granted
                except RuntimeError:  # its event loop is closed: nobody waits any more
                    pass


def _grant(ready: asyncio.Future) -> None:
    if not ready.done():
        ready.set_result(None)


_BUDGETS: dict[int, PixelBudget] = {}


def pixel_budget(max_pixels: int) -> PixelBudget:
    """The process's budget (one per configured size: tests run apps with their own)."""
    return _BUDGETS.setdefault(max_pixels, PixelBudget(max_pixels))


_LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
_MALLOC_TRIM = getattr(_LIBC, "malloc_trim", None)  # glibc only


def release_memory() -> None:
    """Give the heap's free memory back to the OS (a no-op where libc has no malloc_trim)."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)
