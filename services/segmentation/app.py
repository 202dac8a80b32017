from __future__ import annotations

from prelabel.v1 import segmentation_pb2, segmentation_pb2_grpc
from services.common.metrics import Metrics
from services.common.server import GrpcApp
from services.common.triton_app import triton_backed_app
from services.segmentation.head import SegmentHead
from services.segmentation.servicer import SegmenterServicer
from services.segmentation.settings import SegmentationSettings

SERVICE_NAME = segmentation_pb2.DESCRIPTOR.services_by_name["Segmenter"].full_name


def build_app(settings: SegmentationSettings | None = None, metrics: Metrics | None = None) -> GrpcApp:
    return triton_backed_app(
        SegmentHead(settings or SegmentationSettings()), service="segmentation", service_name=SERVICE_NAME,
        servicer=SegmenterServicer, add_servicer=segmentation_pb2_grpc.add_SegmenterServicer_to_server,
        metrics=metrics)
