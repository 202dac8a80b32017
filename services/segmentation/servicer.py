"""Thin gRPC adapter: Segment runs the shared request path with the segmentation head."""
from __future__ import annotations

from prelabel.v1 import segmentation_pb2, segmentation_pb2_grpc
from services.common.task import TaskServicer


class SegmenterServicer(TaskServicer, segmentation_pb2_grpc.SegmenterServicer):
    async def Segment(self, request: segmentation_pb2.SegmentRequest, context) -> segmentation_pb2.SegmentResponse:
        return await self.serve(request, context)
