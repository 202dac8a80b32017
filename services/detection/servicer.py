"""Thin gRPC adapter over services.detection.pipeline."""
from __future__ import annotations

from prelabel.v1 import detection_pb2, detection_pb2_grpc

from services.common import requests as fields
from services.common.interceptors import time_left
from services.common.metrics import Metrics
from services.common.policy_file import ServedPolicy
from services.common.triton_client import TritonClient
from services.detection.pipeline import detect
from services.detection.settings import DetectionSettings


class DetectorServicer(detection_pb2_grpc.DetectorServicer):
    def __init__(self, settings: DetectionSettings, triton: TritonClient, metrics: Metrics):
        self.settings, self.triton, self.metrics = settings, triton, metrics
        self.policy = ServedPolicy.from_settings(settings, metrics)

    async def Detect(self, request: detection_pb2.DetectRequest, context) -> detection_pb2.DetectResponse:
        timeout_s = time_left(context, self.settings.default_timeout_s, self.settings.min_time_left_s)
        request = self.policy.apply(request)
        fields.priority(request.priority)
        return await detect(request, triton=self.triton, settings=self.settings,
                            metrics=self.metrics, timeout_s=timeout_s)
