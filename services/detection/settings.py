from __future__ import annotations

from services.common.settings import ServiceSettings


class DetectionSettings(ServiceSettings):
    """Detection process settings (env prefix PRELABEL_)."""

    grpc_port: int = 50052
    metrics_port: int | None = 9092

    default_model: str = "coco_detector"
    """Model used when a request names none."""

    models: list[str] = ["coco_detector", "face_detector"]
    """Triton models this service may call (requests naming another get INVALID_ARGUMENT)."""
