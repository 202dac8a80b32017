"""Wire a Triton-backed servicer into a GrpcApp: client, readiness, warm-up, shutdown."""
from __future__ import annotations

from typing import Callable

import grpc

from services.common.metrics import Metrics
from services.common.server import GrpcApp
from services.common.settings import ServiceSettings
from services.common.startup import wait_for_models, warm_up
from services.common.triton_client import TritonClient


def triton_backed_app(
    settings: ServiceSettings,
    *,
    service: str,
    service_names: list[str],
    models: list[str],
    add_servicer: Callable[[grpc.aio.Server, TritonClient, Metrics], None],
    metrics: Metrics | None = None,
) -> GrpcApp:
    metrics = metrics or Metrics(service)
    triton = TritonClient(settings.triton_url)

    async def startup() -> None:
        await wait_for_models(triton, models, settings.startup_timeout_s)
        await warm_up(triton, models, require_pretrained=settings.require_pretrained)

    return GrpcApp(
        settings, metrics, service_names,
        register=lambda server: add_servicer(server, triton, metrics),
        ready_check=lambda: triton.ready(models),
        startup=startup,
        shutdown=triton.close,
    )
