"""Helpers for tests that talk to real gRPC servers and Triton."""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from services.common.triton_client import TritonClient


def field_violation(error: grpc.aio.AioRpcError) -> error_details_pb2.BadRequest.FieldViolation:
    """The first field violation of the google.rpc.BadRequest detail of an INVALID_ARGUMENT."""
    status = rpc_status.from_call(error)
    assert status is not None, "no rich status"
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            return bad.field_violations[0]
    raise AssertionError(f"no BadRequest detail in {status}")


def bad_request_field(error: grpc.aio.AioRpcError) -> str:
    """The field named by the google.rpc.BadRequest detail of an INVALID_ARGUMENT."""
    return field_violation(error).field


async def invalid_argument_field(rpc: Callable[..., Awaitable], request, timeout_s: float) -> str:
    """The field that the stub method `rpc` names when it refuses `request` with
    INVALID_ARGUMENT (any other outcome fails the test)."""
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await rpc(request, timeout=timeout_s)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT, f"{exc.value.code()}: {exc.value.details()}"
    return bad_request_field(exc.value)


def counts(after: dict, before: dict) -> tuple[int, int]:
    """(inferences, executions) between two Triton statistics snapshots."""
    return tuple(int(after.get(k, 0)) - int(before.get(k, 0)) for k in ("inference_count", "execution_count"))


async def model_statistics(client: TritonClient, model: str) -> dict:
    return (await client.statistics(model))["model_stats"][0]


async def quiet_statistics(client: TritonClient, model: str, pause_s: float = 0.3) -> dict:
    """Statistics once no request is still being counted: two reads `pause_s` apart agree
    (Triton counts a request just after answering it, so a read right after the last
    reply of an earlier test can miss it)."""
    previous = await model_statistics(client, model)
    for _ in range(20):
        await asyncio.sleep(pause_s)
        current = await model_statistics(client, model)
        if counts(current, previous) == (0, 0):
            return current
        previous = current
    return previous


async def settled_statistics(client: TritonClient, model: str, before: dict, expected: int,
                             timeout_s: float = 10.0) -> dict:
    """Triton counts a batch just after answering it: poll until `expected` inferences
    show, then read once more after a pause so the execution count has settled too."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        after = await model_statistics(client, model)
        if counts(after, before)[0] >= expected or asyncio.get_running_loop().time() > deadline:
            await asyncio.sleep(0.2)
            return await model_statistics(client, model)
        await asyncio.sleep(0.05)


async def concurrent_counts(triton_url: str, model: str, rpc: Callable[..., Awaitable], requests: Sequence,
                            timeout_s: float) -> tuple[list, int, int]:
    """Send `requests` through the stub method `rpc` all at once: (replies in request order,
    inferences, executions) that Triton counted for `model` meanwhile (fewer executions
    than inferences: requests were batched)."""
    client = TritonClient(triton_url)
    try:
        before = await quiet_statistics(client, model)
        replies = await asyncio.gather(*(rpc(r, timeout=timeout_s) for r in requests))
        after = await settled_statistics(client, model, before, expected=len(requests))
    finally:
        await client.close()
    inferences, executions = counts(after, before)
    return list(replies), inferences, executions
