"""Thin gRPC adapter: Detect runs the shared request path with the detection head."""
from __future__ import annotations

from prelabel.v1 import detection_pb2, detection_pb2_grpc
from services.common.task import TaskServicer


class DetectorServicer(TaskServicer, detection_pb2_grpc.DetectorServicer):
    async def Detect(self, request: detection_pb2.DetectRequest, context) -> detection_pb2.DetectResponse:
        return await self.serve(request, context)
