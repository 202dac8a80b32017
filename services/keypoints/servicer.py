"""Thin gRPC adapter over services.keypoints.pipeline."""
from __future__ import annotations

from prelabel.v1 import keypoints_pb2, keypoints_pb2_grpc

from services.common import requests as fields
from services.common.interceptors import time_left
from services.common.metrics import Metrics
from services.common.policy_file import ServedPolicy
from services.common.triton_client import TritonClient
from services.keypoints.pipeline import detect_keypoints
from services.keypoints.settings import KeypointSettings


class KeypointDetectorServicer(keypoints_pb2_grpc.KeypointDetectorServicer):
    def __init__(self, settings: KeypointSettings, triton: TritonClient, metrics: Metrics):
        self.settings, self.triton, self.metrics = settings, triton, metrics
        self.policy = ServedPolicy.from_settings(settings, metrics)

    async def DetectKeypoints(self, request: keypoints_pb2.KeypointRequest, context) -> keypoints_pb2.KeypointResponse:
        timeout_s = time_left(context, self.settings.default_timeout_s, self.settings.min_time_left_s)
        request = self.policy.apply(request)
        fields.priority(request.priority)
        return await detect_keypoints(request, triton=self.triton, settings=self.settings,
                                      metrics=self.metrics, timeout_s=timeout_s)
