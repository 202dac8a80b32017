"""Stand-ins for the three model services that only sleep and answer empty results.

Test doubles on purpose: the router tests measure the router's own behaviour (fan-out
concurrency, deadline propagation, partial results, flow control), which needs model
latency we control exactly; on a 2-core machine real CPU models slow each other down
when run concurrently, which would hide whether the router itself fans out. The real
services are exercised through the router in test_router.py::test_prelabel_*_real*.
"""
from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from prelabel.v1 import (
    common_pb2,
    detection_pb2,
    detection_pb2_grpc,
    keypoints_pb2,
    keypoints_pb2_grpc,
    segmentation_pb2,
    segmentation_pb2_grpc,
)


@dataclass
class Recorder:
    delay_s: float
    detections_per_reply: int = 1
    calls: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    time_remaining: list = field(default_factory=list)
    priorities: list = field(default_factory=list)
    authorization: list = field(default_factory=list)

    async def work(self, request, context):
        self.calls += 1
        self.time_remaining.append(context.time_remaining())
        self.priorities.append(request.priority)
        self.authorization.append(dict(context.invocation_metadata()).get("authorization"))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay_s)
        finally:
            self.in_flight -= 1


def _box():
    return common_pb2.Detection(box=common_pb2.Box(x_min=1, y_min=1, x_max=5, y_max=5), score=0.9,
                                category=common_pb2.Category(id=1, name="person"))


class _Detector(detection_pb2_grpc.DetectorServicer):
    def __init__(self, rec): self.rec = rec

    async def Detect(self, request, context):
        await self.rec.work(request, context)
        return detection_pb2.DetectResponse(image_id=request.image.image_id,
                                            detections=[_box()] * self.rec.detections_per_reply)


class _Segmenter(segmentation_pb2_grpc.SegmenterServicer):
    def __init__(self, rec): self.rec = rec

    async def Segment(self, request, context):
        await self.rec.work(request, context)
        return segmentation_pb2.SegmentResponse(image_id=request.image.image_id)


class _Keypoints(keypoints_pb2_grpc.KeypointDetectorServicer):
    def __init__(self, rec): self.rec = rec

    async def DetectKeypoints(self, request, context):
        await self.rec.work(request, context)
        return keypoints_pb2.KeypointResponse(image_id=request.image.image_id)


@contextlib.asynccontextmanager
async def slow_service(kind: str, delay_s: float, port: int = 0, detections_per_reply: int = 1):
    """Start one stand-in on 127.0.0.1; yields (address, Recorder)."""
    rec = Recorder(delay_s, detections_per_reply)
    server = grpc.aio.server()
    {"detection": lambda: detection_pb2_grpc.add_DetectorServicer_to_server(_Detector(rec), server),
     "segmentation": lambda: segmentation_pb2_grpc.add_SegmenterServicer_to_server(_Segmenter(rec), server),
     "keypoints": lambda: keypoints_pb2_grpc.add_KeypointDetectorServicer_to_server(_Keypoints(rec), server),
     }[kind]()
    health = HealthServicer()
    await health.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    try:
        yield f"127.0.0.1:{bound}", rec
    finally:
        await server.stop(0)
