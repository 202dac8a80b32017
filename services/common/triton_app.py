"""Wire a task's servicer into a GrpcApp: Triton client, readiness, start-up checks,
warm-up, shutdown."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from services.common.image_bytes import ImageBytesBudget
from services.common.metrics import Metrics
from services.common.server import GrpcApp
from services.common.startup import check_model_heads, wait_for_models, warm_up
from services.common.task import TaskHead, TaskServicer
from services.common.triton_client import TritonClient


def triton_backed_app(
    head: TaskHead,
    *,
    service: str,
    service_name: str,
    servicer: type[TaskServicer],
    add_servicer: Callable[[Any, Any], None],
    metrics: Metrics | None = None,
) -> GrpcApp:
    """`add_servicer` is the generated add_<Service>Servicer_to_server."""
    settings = head.settings
    metrics = metrics or Metrics(service)
    triton = TritonClient(settings.triton_url)
    model_heads = head.model_heads()
    models = list(model_heads)

    async def startup() -> None:
        await wait_for_models(triton, models, settings.startup_timeout_s)
        await check_model_heads(triton, model_heads)
        await warm_up(triton, models, require_pretrained=settings.require_pretrained)

    image_bytes = ImageBytesBudget(settings.max_in_flight_image_bytes, settings.retry_after_ms)
    return GrpcApp(
        settings, metrics, [service_name],
        register=lambda server: add_servicer(servicer(head, triton, metrics, image_bytes), server),
        ready_check=lambda: triton.ready(models),
        startup=startup,
        shutdown=triton.close,
        image_bytes=image_bytes,
    )
