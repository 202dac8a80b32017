"""Thin gRPC adapter over services.segmentation.pipeline."""
from __future__ import annotations

from prelabel.v1 import segmentation_pb2, segmentation_pb2_grpc

from services.common import requests as fields
from services.common.interceptors import time_left
from services.common.metrics import Metrics
from services.common.policy_file import ServedPolicy
from services.common.triton_client import TritonClient
from services.segmentation.pipeline import segment
from services.segmentation.settings import SegmentationSettings


class SegmenterServicer(segmentation_pb2_grpc.SegmenterServicer):
    def __init__(self, settings: SegmentationSettings, triton: TritonClient, metrics: Metrics):
        self.settings, self.triton, self.metrics = settings, triton, metrics
        self.policy = ServedPolicy.from_settings(settings, metrics)

    async def Segment(self, request: segmentation_pb2.SegmentRequest, context) -> segmentation_pb2.SegmentResponse:
        timeout_s = time_left(context, self.settings.default_timeout_s, self.settings.min_time_left_s)
        request = self.policy.apply(request)
        fields.priority(request.priority)
        return await segment(request, triton=self.triton, settings=self.settings,
                             metrics=self.metrics, timeout_s=timeout_s)
