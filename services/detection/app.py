from __future__ import annotations

from prelabel.v1 import detection_pb2, detection_pb2_grpc
from services.common.metrics import Metrics
from services.common.server import GrpcApp
from services.common.triton_app import triton_backed_app
from services.detection.head import DetectHead
from services.detection.servicer import DetectorServicer
from services.detection.settings import DetectionSettings

SERVICE_NAME = detection_pb2.DESCRIPTOR.services_by_name["Detector"].full_name


def build_app(settings: DetectionSettings | None = None, metrics: Metrics | None = None) -> GrpcApp:
    return triton_backed_app(
        DetectHead(settings or DetectionSettings()), service="detection", service_name=SERVICE_NAME,
        servicer=DetectorServicer, add_servicer=detection_pb2_grpc.add_DetectorServicer_to_server,
        metrics=metrics)
