from __future__ import annotations

from services.common.settings import ServiceSettings


class SegmentationSettings(ServiceSettings):
    """Segmentation process settings (env prefix PRELABEL_)."""

    grpc_port: int = 50053
    metrics_port: int | None = 9093

    segmentation_model: str = "segmenter"
    """Triton model serving both modes (automatic and box-prompted masks)."""

    max_mask_pixels: int = 72_000_000
    """Work bound per request: the source pixels all its masks' boxes cover together
    (pasting costs per pixel). Prompts covering more are refused with INVALID_ARGUMENT
    before inference; automatic mode keeps its highest-scoring instances up to it."""

    max_polygon_vertices: int = 200_000
    """Work and size bound per request on include_polygons: more vertices than this
    end the call INVALID_ARGUMENT (ask without polygons or with smaller boxes)."""

    @property
    def models(self) -> list[str]:
        return [self.segmentation_model]
