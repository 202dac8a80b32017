import asyncio

import pytest

from prelabel.core.errors import ResourceExhausted
from services.common.receive_budget import ReceiveBudget


async def test_receive_budget_receives_as_many_calls_at_once_as_their_worst_case_fits():
    budget = ReceiveBudget(max_bytes=100, call_bytes=40, wait_s=5, retry_after_ms=200)
    peak = 0

    async def receive():
        nonlocal peak
        async with budget.receiving(budget.wait_s):
            peak = max(peak, budget.receiving_now)
            await asyncio.sleep(0.02)

    await asyncio.gather(*(receive() for _ in range(6)))
    assert peak == 2  # 40 + 40 fit, a third does not
    assert budget.receiving_now == 0


async def test_receive_budget_refuses_with_a_retry_hint_when_no_room_comes_in_time():
    budget = ReceiveBudget(max_bytes=40, call_bytes=40, wait_s=5, retry_after_ms=250)
    release = asyncio.Event()

    async def hold():
        async with budget.receiving(budget.wait_s):
            await release.wait()

    holder = asyncio.ensure_future(hold())
    await asyncio.sleep(0)
    with pytest.raises(ResourceExhausted) as refused:
        async with budget.receiving(0.05):
            pass
    assert refused.value.retry_after_ms == 250
    release.set()
    await holder
    async with budget.receiving(0.05):  # the refused waiter took nothing
        assert budget.receiving_now == 1


async def test_receive_budget_lets_one_call_through_when_the_budget_is_smaller_than_its_worst_case():
    budget = ReceiveBudget(max_bytes=10, call_bytes=40, wait_s=5, retry_after_ms=200)
    async with budget.receiving(0.05):
        assert budget.slots == 1
