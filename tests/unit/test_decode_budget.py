import asyncio
import threading
import time

import pytest

from services.common.decode_budget import PixelBudget


async def test_pixel_budget_runs_at_most_the_budget_at_once_when_many_images_wait():
    budget = PixelBudget(100)
    running, peak, lock = [0], [0], threading.Lock()

    def work(stop):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return "done"

    results = await asyncio.gather(*(budget.run(40, work) for _ in range(6)))
    assert results == ["done"] * 6
    assert peak[0] == 2  # 40 + 40 fit, a third does not
    assert budget.in_use == 0


async def test_pixel_budget_counts_a_cancelled_callers_pixels_until_its_thread_ends():
    budget = PixelBudget(100)
    release = threading.Event()
    first = asyncio.ensure_future(budget.run(100, lambda stop: release.wait()))
    await asyncio.sleep(0.05)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert budget.in_use == 100  # the thread still decodes
    second = asyncio.ensure_future(budget.run(10, lambda stop: "ran"))
    await asyncio.sleep(0.05)
    assert not second.done()
    release.set()
    assert await asyncio.wait_for(second, 5) == "ran"
    assert budget.in_use == 0


async def test_pixel_budget_forgets_a_waiter_when_it_is_cancelled():
    budget = PixelBudget(100)
    release = threading.Event()
    holder = asyncio.ensure_future(budget.run(100, lambda stop: release.wait()))
    await asyncio.sleep(0.02)
    waiter = asyncio.ensure_future(budget.run(50, lambda stop: None))
    await asyncio.sleep(0.02)
    waiter.cancel()
    release.set()
    await holder
    await asyncio.sleep(0.02)
    assert budget.in_use == 0


async def test_pixel_budget_sets_stop_when_the_caller_is_cancelled():
    budget = PixelBudget(100)
    seen = threading.Event()

    def work(stop):
        seen.set()
        return stop.wait(5)

    call = asyncio.ensure_future(budget.run(10, work))
    await asyncio.to_thread(seen.wait, 5)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    for _ in range(100):
        if budget.in_use == 0:
            break
        await asyncio.sleep(0.01)
    assert budget.in_use == 0  # the thread saw stop and ended well before its 5 s
