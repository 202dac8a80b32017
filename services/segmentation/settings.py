from __future__ import annotations

from services.common.settings import ServiceSettings


class SegmentationSettings(ServiceSettings):
    """Segmentation process settings (env prefix PRELABEL_)."""

    grpc_port: int = 50053
    metrics_port: int | None = 9093

    segmentation_model: str = "segmenter"
    """Triton model serving both modes (automatic and box-prompted masks)."""

    @property
    def models(self) -> list[str]:
        return [self.segmentation_model]
