from __future__ import annotations

from pathlib import Path

from services.common.settings import ServiceSettings


class DetectionSettings(ServiceSettings):
    """Detection process settings (env prefix PRELABEL_)."""

    grpc_port: int = 50052
    metrics_port: int | None = 9092

    default_model: str = "coco_detector"
    """Model used when a request names none."""

    models: list[str] = ["coco_detector", "face_detector"]
    """Triton models this service may call (requests naming another get INVALID_ARGUMENT)."""

    review_policy_file: Path | None = None
    """Review-policy file (JSON or YAML, written by `prelabel calibrate`) whose bands
    replace the built-in 0.85 / 0.30 for requests that set none. A bad file stops
    start-up; the file is re-read when it changes, and a bad new version is refused
    (the old policy stays, logged and counted in prelabel_review_policy_reloads_total)."""

    review_policy_reload_s: float = 5.0
    """How often, at most, the policy file is checked for changes (on the next request)."""
