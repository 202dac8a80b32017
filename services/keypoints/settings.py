from __future__ import annotations

from pathlib import Path

from services.common.settings import ServiceSettings


class KeypointSettings(ServiceSettings):
    """Keypoint process settings (env prefix PRELABEL_)."""

    grpc_port: int = 50054
    metrics_port: int | None = 9094

    person_keypoint_model: str = "keypointer"
    """Triton model for COCO person keypoints (automatic and box-prompted)."""

    face_landmark_model: str = "face_detector"
    """Triton model for faces with 5 landmarks (LANDMARKS output)."""

    review_policy_file: Path | None = None
    """Review-policy file (JSON or YAML, written by `prelabel calibrate`) whose bands
    replace the built-in 0.85 / 0.30 for requests that set none. A bad file stops
    start-up; the file is re-read when it changes, and a bad new version is refused
    (the old policy stays, logged and counted in prelabel_review_policy_reloads_total)."""

    review_policy_reload_s: float = 5.0
    """How often, at most, the policy file is checked for changes (on the next request)."""

    @property
    def models(self) -> list[str]:
        return [self.person_keypoint_model, self.face_landmark_model]
