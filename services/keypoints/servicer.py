"""Thin gRPC adapter: DetectKeypoints runs the shared request path with the keypoint head."""
from __future__ import annotations

from prelabel.v1 import keypoints_pb2, keypoints_pb2_grpc
from services.common.task import TaskServicer


class KeypointDetectorServicer(TaskServicer, keypoints_pb2_grpc.KeypointDetectorServicer):
    async def DetectKeypoints(self, request: keypoints_pb2.KeypointRequest,
                              context) -> keypoints_pb2.KeypointResponse:
        return await self.serve(request, context)
