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

    image_state_max_bytes: int = 64 * 1024 * 1024
    """The router sends each PreLabel image here twice (person keypoints and faces, at
    once); when both models take the same input size (512x512 in the CPU profile) the
    second request reuses the first's decoded, letterboxed input (768 KiB). 64 MiB holds
    85 of them, more than the 32 distinct images that max_in_flight (64) admits at once,
    and is ~3% of the pod's 2 GiB memory limit (k8s/base/keypoints.yaml; checked by
    tests/k8s). 0 disables it."""

    @property
    def models(self) -> list[str]:
        return [self.person_keypoint_model, self.face_landmark_model]
