"""Waiting for a condition in tests: poll it, bounded in time, instead of sleeping a fixed
time and hoping it came true (too short under load, too long otherwise)."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

POLL_S = 0.01


async def until(condition: Callable[[], object], timeout_s: float = 10.0, poll_s: float = POLL_S,
                what: str = "condition") -> None:
    """Return once `condition()` is truthy (checked at once, then every `poll_s`, the event
    loop running meanwhile); TimeoutError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not true after {timeout_s} s")
        await asyncio.sleep(poll_s)

