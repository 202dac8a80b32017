from __future__ import annotations

from prelabel.v1 import prelabel_pb2, prelabel_pb2_grpc, segmentation_pb2_grpc
from services.common.interceptors import Admission
from services.common.metrics import Metrics
from services.common.receive_budget import ReceiveBudget
from services.common.server import GrpcApp
from services.router.clicks import SERVICE_NAME as CLICKS_SERVICE_NAME
from services.router.clicks import ClickForwarder
from services.router.downstream import Downstream
from services.router.servicer import PreLabelerServicer
from services.router.settings import RouterSettings

SERVICE_NAME = prelabel_pb2.DESCRIPTOR.services_by_name["PreLabeler"].full_name


def build_app(settings: RouterSettings | None = None, metrics: Metrics | None = None) -> GrpcApp:
    settings = settings or RouterSettings()
    metrics = metrics or Metrics("router")
    down = Downstream(settings)
    admission = Admission(settings.max_in_flight, settings.retry_after_ms)
    receive_budget = ReceiveBudget.for_settings(settings)  # shared: the servicer reads stream images under it
    servicer = PreLabelerServicer(settings, down, metrics, admission, receive_budget)

    def register(server) -> None:
        prelabel_pb2_grpc.add_PreLabelerServicer_to_server(servicer, server)
        # Interactive segmentation, forwarded (services.router.clicks).
        segmentation_pb2_grpc.add_SegmenterServicer_to_server(ClickForwarder(settings, down, servicer.image_bytes),
                                                           server)

    return GrpcApp(
        settings, metrics, [SERVICE_NAME, CLICKS_SERVICE_NAME],
        register=register,
        admission=admission,
        draining=servicer.drain,
        ready_check=down.any_serving,
        shutdown=down.close,
        components=list(down.channels),
        component_check=down.components,
        per_item_streams=[f"/{SERVICE_NAME}/PreLabelStream"],
        receive_budget=receive_budget,
    )
