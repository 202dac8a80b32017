from __future__ import annotations

from prelabel.v1 import keypoints_pb2, keypoints_pb2_grpc
from services.common.metrics import Metrics
from services.common.server import GrpcApp
from services.common.triton_app import triton_backed_app
from services.keypoints.head import KeypointHead
from services.keypoints.servicer import KeypointDetectorServicer
from services.keypoints.settings import KeypointSettings

SERVICE_NAME = keypoints_pb2.DESCRIPTOR.services_by_name["KeypointDetector"].full_name


def build_app(settings: KeypointSettings | None = None, metrics: Metrics | None = None) -> GrpcApp:
    return triton_backed_app(
        KeypointHead(settings or KeypointSettings()), service="keypoints", service_name=SERVICE_NAME,
        servicer=KeypointDetectorServicer,
        add_servicer=keypoints_pb2_grpc.add_KeypointDetectorServicer_to_server, metrics=metrics)
