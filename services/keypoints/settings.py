from __future__ import annotations

from services.common.settings import ServiceSettings


class KeypointSettings(ServiceSettings):
    """Keypoint process settings (env prefix PRELABEL_)."""

    grpc_port: int = 50054
    metrics_port: int | None = 9094

    person_keypoint_model: str = "keypointer"
    """Triton model for COCO person keypoints (automatic and box-prompted)."""

    face_landmark_model: str = "face_detector"
    """Triton model for faces with 5 landmarks (LANDMARKS output)."""

    @property
    def models(self) -> list[str]:
        return [self.person_keypoint_model, self.face_landmark_model]
