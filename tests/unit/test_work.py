"""WorkBudget: what stops mask pasting and polygon tracing in a worker thread."""
from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from prelabel.core.errors import DeadlineExceeded, InvalidArgument
from services.common.masks import BinaryMask, encode_mask, outer_polygons
from services.common.work import WorkBudget, run_bounded
from tests.waiting import until

pytestmark = pytest.mark.timeout(30)


def budget(deadline_in_s: float = 60.0, vertices: int = 1_000_000) -> WorkBudget:
    return WorkBudget(time.monotonic() + deadline_in_s, vertices)


def test_encode_mask_stops_with_deadline_exceeded_when_deadline_has_passed():
    with pytest.raises(DeadlineExceeded):
        encode_mask(np.ones((28, 28)), (0, 0, 2000, 2000), 2000, 2000, 0.5, budget=budget(-1.0))


def test_encode_mask_matches_unbounded_result_when_budget_is_ample():
    probs = np.random.default_rng(3).random((28, 28))
    box = (3.5, 7.25, 1500.0, 900.0)
    plain = encode_mask(probs, box, 1600, 1000, 0.5, polygons=True)
    bounded = encode_mask(probs, box, 1600, 1000, 0.5, polygons=True, budget=budget())
    assert (plain.rle, plain.area, plain.polygons) == (bounded.rle, bounded.area, bounded.polygons)
    assert plain.quality == pytest.approx(bounded.quality)


def test_outer_polygons_refuses_with_invalid_argument_when_vertices_exceed_the_budget():
    checkerboard = (np.indices((200, 200)).sum(axis=0) % 2).astype(bool)  # 20,000 components
    with pytest.raises(InvalidArgument) as err:
        outer_polygons(BinaryMask(checkerboard, 0, 0, 200, 200), budget(vertices=10_000))
    assert err.value.field == "include_polygons"


async def test_run_bounded_stops_the_thread_when_the_caller_is_cancelled():
    started, stopped = threading.Event(), threading.Event()

    def work(b: WorkBudget):
        started.set()
        try:
            while True:
                b.check()
                time.sleep(0.001)
        except DeadlineExceeded:
            stopped.set()

    task = asyncio.create_task(run_bounded(work, budget=budget()))
    await until(started.is_set, what="the work running in its thread")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(stopped.wait, 5)
