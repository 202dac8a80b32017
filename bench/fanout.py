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
TASKS = ("detect", "segment", "keypoints", "faces")


def not_measured_reason() -> str:
    return NOT_IN_STACK if importlib.util.find_spec("services.router") is not None else NOT_BUILT


def single_call(task: str, channel) -> SingleCall:
    """The direct call to the service that handles `task`, as the router makes it."""
    from prelabel.v1 import (
        common_pb2,
        detection_pb2,
        detection_pb2_grpc,
        keypoints_pb2,
        keypoints_pb2_grpc,
        segmentation_pb2,
        segmentation_pb2_grpc,
    )

    def image(data: bytes):
        return common_pb2.Image(data=data, image_id="bench")

    if task == "detect":
        stub = detection_pb2_grpc.DetectorStub(channel)
        return lambda data: stub.Detect(detection_pb2.DetectRequest(image=image(data)), timeout=120)
    if task == "segment":
        stub = segmentation_pb2_grpc.SegmenterStub(channel)
        return lambda data: stub.Segment(segmentation_pb2.SegmentRequest(image=image(data)), timeout=120)
    if task in ("keypoints", "faces"):
        stub = keypoints_pb2_grpc.KeypointDetectorStub(channel)
        kind = keypoints_pb2.KEYPOINT_KIND_PERSON if task == "keypoints" else keypoints_pb2.KEYPOINT_KIND_FACE
        return lambda data: stub.DetectKeypoints(keypoints_pb2.KeypointRequest(image=image(data), kind=kind),
                                                 timeout=120)
    raise ValueError(f"unknown task {task!r}; one of {TASKS}")


async def measure_fanout(router_address: str | None, single_addresses: dict[str, str], images: list[bytes], *,
                         rounds: int, warm_s: float, window_s: float) -> dict:
    """PreLabel(tasks = the keys of `single_addresses`) vs each single service."""
    if not router_address or not single_addresses:
        return {"measured": False, "reason": not_measured_reason()}
    import grpc

    from prelabel.v1 import common_pb2, prelabel_pb2, prelabel_pb2_grpc

    task_enum = {"detect": prelabel_pb2.TASK_DETECT, "segment": prelabel_pb2.TASK_SEGMENT,
                 "keypoints": prelabel_pb2.TASK_KEYPOINTS, "faces": prelabel_pb2.TASK_FACES}
    tasks = [task_enum[t] for t in single_addresses]
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
