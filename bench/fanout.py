"""Fan-out: the router's PreLabel p50 for all tasks over the largest p50 of the single
services it fans out to, same images, concurrency 1, interleaved (target <= 1.15).

A full run starts the whole suite for this (bench.cli.fanout_with_devstack: Triton with
every model, the three services and the router, as `make run` does). To measure a
running deployment instead: `python -m bench --router HOST:PORT
--fanout-single detect=HOST:PORT --fanout-single segment=HOST:PORT
--fanout-single keypoints=HOST:PORT --fanout-single faces=HOST:PORT` (the tasks
given are the tasks asked of the router).
"""
from __future__ import annotations

import importlib.util
from collections.abc import Awaitable, Callable

from bench.load import Variant, interleave

NOT_BUILT = "not measured: router not built yet"
NOT_IN_STACK = ("not measured in this mode: a full run starts the whole suite for it, or pass "
                "--router HOST:PORT and --fanout-single TASK=HOST:PORT for each service it calls")

SingleCall = Callable[[bytes], Awaitable[object]]


def not_measured_reason() -> str:
    return NOT_IN_STACK if importlib.util.find_spec("services.router") is not None else NOT_BUILT


def single_call(task: str, channel) -> SingleCall:
    """The direct call to the service that handles `task` (the method its route in the
    router calls), with the image alone."""
    from prelabel.core.tasks import BY_NAME, TASK_NAMES
    from prelabel.v1 import common_pb2
    from services.router.routes import ROUTES

    if task not in BY_NAME:
        raise ValueError(f"unknown task {task!r}; one of {TASK_NAMES}")
    route = ROUTES[BY_NAME[task].enum]
    rpc = route.rpc(channel)
    return lambda data: rpc(route.bare_request(common_pb2.Image(data=data, image_id="bench")), timeout=120)


async def measure_fanout(router_address: str | None, single_addresses: dict[str, str], images: list[bytes], *,
                         rounds: int, warm_s: float, window_s: float) -> dict:
    """PreLabel(tasks = the keys of `single_addresses`) vs each single service."""
    if not router_address or not single_addresses:
        return {"measured": False, "reason": not_measured_reason()}
    import grpc

    from prelabel.core.tasks import BY_NAME
    from prelabel.v1 import common_pb2, prelabel_pb2, prelabel_pb2_grpc

    tasks = [BY_NAME[t].enum for t in single_addresses]
    channels = {t: grpc.aio.insecure_channel(a) for t, a in single_addresses.items()}
    try:
        async with grpc.aio.insecure_channel(router_address) as channel:
            stub = prelabel_pb2_grpc.PreLabelerStub(channel)

            async def router(data: bytes):
                return await stub.PreLabel(prelabel_pb2.PreLabelRequest(
                    image=common_pb2.Image(data=data, image_id="bench"), tasks=tasks), timeout=120)

            variants = [Variant("router_all_tasks", router, images)]
            variants += [Variant(t, single_call(t, ch), images) for t, ch in channels.items()]
            await interleave(variants, rounds=rounds, concurrency=1, warm_s=warm_s, window_s=window_s)
    finally:
        for ch in channels.values():
            await ch.close()
    summaries = {v.name: v.summary() for v in variants}
    router_p50 = summaries["router_all_tasks"]["p50_ms"]
    slowest_p50, slowest = max((s["p50_ms"], n) for n, s in summaries.items() if n != "router_all_tasks")
    return {
        "measured": True,
        "tasks": list(single_addresses),
        "variants": summaries,
        "router_p50_ms": router_p50,
        "slowest_single": slowest,
        "slowest_single_p50_ms": slowest_p50,
        "ratio": router_p50 / slowest_p50,
    }
