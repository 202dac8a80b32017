"""Channels and stubs to the three model services, and the router's readiness."""
from __future__ import annotations

import asyncio

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from prelabel.v1 import detection_pb2_grpc, keypoints_pb2_grpc, segmentation_pb2_grpc

from services.router.settings import RouterSettings


class Downstream:
    def __init__(self, settings: RouterSettings):
        options = [
            ("grpc.max_send_message_length", settings.grpc_max_receive_bytes),
            ("grpc.max_receive_message_length", settings.grpc_max_receive_bytes),
        ]
        self.channels = {
            "detection": grpc.aio.insecure_channel(settings.detection_addr, options=options),
            "segmentation": grpc.aio.insecure_channel(settings.segmentation_addr, options=options),
            "keypoints": grpc.aio.insecure_channel(settings.keypoints_addr, options=options),
        }
        self.detector = detection_pb2_grpc.DetectorStub(self.channels["detection"])
        self.segmenter = segmentation_pb2_grpc.SegmenterStub(self.channels["segmentation"])
        self.keypoints = keypoints_pb2_grpc.KeypointDetectorStub(self.channels["keypoints"])

    async def serving(self) -> dict[str, bool]:
        async def check(channel) -> bool:
            try:
                reply = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=""), timeout=2)
                return reply.status == health_pb2.HealthCheckResponse.SERVING
            except grpc.aio.AioRpcError:
                return False

        names = list(self.channels)
        results = await asyncio.gather(*(check(self.channels[n]) for n in names))
        return dict(zip(names, results))

    async def any_serving(self) -> bool:
        """Ready while at least one service answers: partial results beat none."""
        return any((await self.serving()).values())

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self.channels.values()))
