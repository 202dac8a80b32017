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

    click_model: str = ""
    """Interactive segmentation: the SAM-interface pair that answers clicks (PRELABEL_CLICK_MODEL;
    the NAME of `prelabel models add --family sam (or sam2) NAME ...`, served as NAME_encoder and
    NAME_decoder); empty answers them with GrabCut."""

    sam_box_prompts: bool = True
    """With a click_model: prompted Segment (box prompts, the router's cascade) is answered by
    that SAM pair, one mask per box on the embedding the clicks use
    (services.segmentation.sam_boxes); false keeps the segmentation model for boxes. Automatic
    mode always uses the segmentation model."""

    click_max_points: int = 64
    """Interactive segmentation: points one click prompt may carry (more: INVALID_ARGUMENT)."""

    click_grid_max_side: int = 256
    """Interactive segmentation (GrabCut): the image is downscaled to this long side (px)
    once per image; the low-resolution masks are on that grid. A smaller grid is faster
    (measured CPU per click on coffee: ~460 ms at 256, ~110 ms at 192) but GrabCut's
    answers change with the grid: the click tests' pictures were checked at 256."""

    click_state_max_bytes: int = 64 * 1024 * 1024
    """Interactive segmentation: bound of the per-image state kept between clicks (the
    downscaled images, at most 192 KB each at 256 px; with a click_model, the SAM image
    embeddings, 4 MiB each), least recently used evicted first; 0 keeps none (every click
    prepares its image again)."""

    click_session_idle_s: float = 300.0
    """ClickSession: a session with no message for this long ends DEADLINE_EXCEEDED."""

    click_max_sessions: int = 32
    """ClickSession: open sessions one process serves at once; more get RESOURCE_EXHAUSTED
    with the retry hint. A session counts against max_in_flight for its whole life, so
    this stays below it: open sessions never take every slot from unary calls."""

    click_session_max_s: float = 3600.0
    """ClickSession: the session's deadline when the caller sets none (the caller's
    deadline, when shorter, wins)."""

    @property
    def models(self) -> list[str]:
        return [self.segmentation_model]
