"""Bounded CPU work in worker threads. A cancelled asyncio task cannot stop the thread
it awaits (asyncio.to_thread), so the thread checks a WorkBudget between steps: it
stops when the call's deadline has passed or the call was cancelled, and it counts
the polygon vertices a request may produce."""
from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from prelabel.core.errors import DeadlineExceeded, InvalidArgument

T = TypeVar("T")


class WorkBudget:
    def __init__(self, deadline: float, max_polygon_vertices: int):
        self.deadline = deadline  # time.monotonic()
        self.vertices_left = max_polygon_vertices
        self.max_polygon_vertices = max_polygon_vertices
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        self._cancelled.set()

    def check(self) -> None:
        """Raise DeadlineExceeded once the call is cancelled or past its deadline."""
        if self._cancelled.is_set():
            raise DeadlineExceeded("call cancelled; work stopped")
        if time.monotonic() > self.deadline:
            raise DeadlineExceeded("deadline passed while pasting masks; work stopped")

    def spend_vertices(self, count: int) -> None:
        self.vertices_left -= count
        if self.vertices_left < 0:
            raise InvalidArgument("include_polygons", f"polygons would exceed {self.max_polygon_vertices} "
                                                      "vertices per request; ask without polygons or with "
                                                      "fewer or smaller boxes")


async def run_bounded(fn: Callable[..., T], *args, budget: WorkBudget) -> T:
    """`fn(*args, budget)` in a worker thread; cancelling the caller stops the thread at
    its next budget check instead of letting it run to the end."""
    try:
        return await asyncio.to_thread(fn, *args, budget)
    except asyncio.CancelledError:
        budget.cancel()
        raise
