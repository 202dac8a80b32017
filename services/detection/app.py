from __future__ import annotations

from prelabel.v1 import detection_pb2, detection_pb2_grpc

from services.common.metrics import Metrics
from services.common.server import GrpcApp
from services.common.triton_app import triton_backed_app
from services.detection.servicer import DetectorServicer
from services.detection.settings import DetectionSettings

SERVICE_NAME = detection_pb2.DESCRIPTOR.services_by_name["Detector"].full_name


def build_app(settings: DetectionSettings | None = None, metrics: Metrics | None = None) -> GrpcApp:
    settings = settings or DetectionSettings()
    return triton_backed_app(
        settings,
        service="detection",
        service_names=[SERVICE_NAME],
        models=settings.models,
        add_servicer=lambda server, triton, m: detection_pb2_grpc.add_DetectorServicer_to_server(
            DetectorServicer(settings, triton, m), server),
        metrics=metrics,
    )
