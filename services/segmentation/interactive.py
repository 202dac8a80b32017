"""Interactive segmentation (SegmentClick, ClickSession): clicks and a box in, candidate
masks out, with the image's state kept between clicks.

The CPU engine is GrabCut seeded by the prompt (services.modelkit.grabcut_clicks), run
in this process in a worker thread that stops at the click's deadline: it needs no model,
and its per-image state is the decoded image downscaled to its grid, held in the
per-image state cache (services.common.image_state) under the kind
"grabcut-grid:<max_side>". A later click on the same image bytes skips decoding and
downscaling; an evicted image is prepared again. The low-resolution mask a candidate
carries is GrabCut's foreground on that grid (uint8, 1 = object), which the next click
refines.

GrabCut has no confidence: the mask's pixels get the served segmenter's
`grabcut_probability` (its Triton config, 0.6 in the CPU profile), so mask quality and
score say "draft" and the default review bands send the mask to review. One candidate
per prompt (multimask_output asks for more than GrabCut makes).

A served SAM-interface pair answers clicks instead when the `click_model` setting names it
(services.segmentation.sam_clicks); both engines meet `ClickEngine`, so the servicer runs
one request path for either.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from prelabel.core.review import ReviewPolicy
from prelabel.v1 import common_pb2, segmentation_pb2
from services.common.image_state import ImageStateCache, StateKey, image_digest_async, read_only
from services.common.imaging import decode_image
from services.common.labeling import make_detection
from services.common.masks import encode_mask
from services.common.metrics import Metrics
from services.common.work import WorkBudget, run_bounded
from services.modelkit import grabcut_clicks
from services.segmentation.clicks import Click, placed_click, previous_mask
from services.segmentation.settings import SegmentationSettings

#: GrabCut's low-resolution mask: one byte per grid pixel.
LOW_RES_DTYPE = np.dtype(np.uint8)


@dataclass(frozen=True)
class ClickImage:
    """An image as the GrabCut engine keeps it between clicks."""

    grid: np.ndarray  # uint8 [h, w, 3] RGB, read-only: the image downscaled to the grid
    width: int  # source size, after EXIF orientation
    height: int

    @property
    def nbytes(self) -> int:
        return int(self.grid.nbytes)

    @property
    def size_proto(self) -> common_pb2.ImageSize:
        return common_pb2.ImageSize(width=self.width, height=self.height)

    def to_grid(self, points: np.ndarray) -> np.ndarray:
        """Source pixels -> grid pixels (pixel centres stay centres)."""
        h, w = self.grid.shape[:2]
        scale = np.array([w / self.width, h / self.height])
        return np.asarray(points, np.float64).reshape(-1, 2) * scale


@dataclass(frozen=True)
class PreparedClickImage:
    image: ClickImage
    reused: bool  # found in the per-image state


class PreparedImage(Protocol):
    """An engine's state of one image, as a session holds it between clicks."""

    @property
    def reused(self) -> bool: ...  # found in the per-image state


class ClickEngine(Protocol):
    """What answers clicks: the image's state (held, or made now), then any number of
    clicks on it."""

    async def prepare(self, data: bytes, deadline: float, priority: common_pb2.Priority) -> PreparedImage: ...

    async def answer(self, prepared, click: Click, *, image_id: str, policy: ReviewPolicy, deadline: float,
                     priority: common_pb2.Priority) -> segmentation_pb2.ClickResponse: ...


@dataclass(frozen=True)
class GrabCutSettings:
    """What the served segmenter's config says about GrabCut."""

    probability: float
    iterations: int


def prepare_click_image(data: bytes, settings: SegmentationSettings) -> ClickImage:
    """Decode (at reduced scale for large JPEGs) and downscale to the grid. CPU-bound:
    runs in a worker thread."""
    side = settings.click_grid_max_side
    decoded = decode_image(data, max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels,
                           target_size=(side, side))
    shape = grabcut_clicks.grid_shape(decoded.width, decoded.height, side)
    grid = grabcut_clicks.on_grid(np.asarray(decoded.image), shape)
    return ClickImage(read_only(grid), decoded.width, decoded.height)


class GrabCutClicks:
    """The CPU engine: per-image state and one candidate per prompt. `grabcut` reads the
    GrabCut settings of the served segmenter's config."""

    def __init__(self, settings: SegmentationSettings, state: ImageStateCache, metrics: Metrics,
                 grabcut: Callable[[], Awaitable[GrabCutSettings]]):
        self.settings, self.state, self.metrics, self.grabcut = settings, state, metrics, grabcut
        self.kind = f"grabcut-grid:{settings.click_grid_max_side}"

    async def prepare(self, data: bytes, deadline: float, priority: common_pb2.Priority) -> PreparedClickImage:
        return await self.image(data)  # no model call: no deadline or priority to pass on

    async def answer(self, prepared: PreparedClickImage, click: Click, *, image_id: str, policy: ReviewPolicy,
                     deadline: float, priority: common_pb2.Priority) -> segmentation_pb2.ClickResponse:
        return await answer_click(self, prepared, click, image_id=image_id, policy=policy,
                                  grabcut=await self.grabcut(), deadline=deadline)

    async def image(self, data: bytes) -> PreparedClickImage:
        """The image's state: held, or prepared now (and held if it fits)."""
        settings = self.settings

        async def prepare() -> ClickImage:
            return await asyncio.to_thread(prepare_click_image, data, settings)

        if not self.state.enabled or len(data) > settings.max_image_bytes:
            return PreparedClickImage(await prepare(), reused=False)  # an oversize image: refused, never hashed
        key = StateKey(await image_digest_async(data, settings.inline_decode_max_bytes), self.kind)
        reused = key in self.state
        image = await self.state.get_or_compute(key, prepare, size_of=lambda image: image.nbytes)
        return PreparedClickImage(image, reused)

    def provenance(self) -> common_pb2.Provenance:
        return common_pb2.Provenance(
            model_name="grabcut",
            architecture=f"OpenCV {cv2.__version__} GrabCut seeded by clicks, box and previous mask, "
                         f"on a {self.settings.click_grid_max_side} px grid",
            weights=common_pb2.WEIGHTS_UNSPECIFIED,
            weights_source="none: colour models of the image itself",
            license="Apache-2.0 (OpenCV)",
        )

    def candidates(self, image: ClickImage, click: Click, policy: ReviewPolicy, grabcut: GrabCutSettings,
                   budget: WorkBudget) -> list[segmentation_pb2.MaskCandidate]:
        """One candidate for a placed click (worker thread)."""
        grid_shape = image.grid.shape[:2]
        previous = previous_mask(click, grid_shape, LOW_RES_DTYPE)
        seeds = grabcut_clicks.Seeds(
            positive=image.to_grid(click.positive),
            negative=image.to_grid(click.negative),
            box=None if click.box is None else image.to_grid(np.reshape(click.box, (2, 2))).reshape(4),
            previous=previous,
        )
        fg = grabcut_clicks.segment(image.grid, seeds, grabcut.iterations)
        budget.check()
        whole = (0.0, 0.0, float(image.width), float(image.height))
        encoded = encode_mask(fg.astype(np.float32) * np.float32(grabcut.probability), whole, image.width,
                              image.height, click.mask_threshold, click.polygons, budget)
        box = self._mask_box(fg, image) if encoded.area else (click.box or (0.0, 0.0, 0.0, 0.0))
        instance = segmentation_pb2.InstanceMask(
            detection=make_detection(box, click.category.id, click.category.name, encoded.quality, policy,
                                     self.provenance()),
            mask=common_pb2.RleMask(size=encoded.rle["size"], counts=encoded.rle["counts"]),
            area=encoded.area,
            mask_quality=encoded.quality,
            polygons=[common_pb2.Polygon(points=p) for p in encoded.polygons],
        )
        low_res = segmentation_pb2.LowResMask(data=fg.astype(LOW_RES_DTYPE).tobytes(), shape=list(grid_shape))
        return [segmentation_pb2.MaskCandidate(instance=instance, low_res_mask=low_res)]

    @staticmethod
    def _mask_box(fg: np.ndarray, image: ClickImage) -> tuple[float, float, float, float]:
        """Bounding box of the grid mask, in source pixels."""
        rows, cols = np.nonzero(fg)
        h, w = fg.shape
        sx, sy = image.width / w, image.height / h
        return (float(cols.min() * sx), float(rows.min() * sy), float(min(image.width, (cols.max() + 1) * sx)),
                float(min(image.height, (rows.max() + 1) * sy)))


async def answer_click(engine: GrabCutClicks, prepared: PreparedClickImage, click: Click, *, image_id: str,
                       policy: ReviewPolicy, grabcut: GrabCutSettings,
                       deadline: float) -> segmentation_pb2.ClickResponse:
    """The response to one click on a prepared image."""
    image = prepared.image
    click = placed_click(click, image.width, image.height)
    budget = WorkBudget(deadline, engine.settings.max_polygon_vertices)
    started = time.perf_counter()
    candidates = await run_bounded(engine.candidates, image, click, policy, grabcut, budget=budget)
    engine.metrics.stage.labels(engine.metrics.service, "click").observe(time.perf_counter() - started)
    return segmentation_pb2.ClickResponse(
        image_id=image_id, image_size=image.size_proto, candidates=candidates,
        provenance=engine.provenance(), image_state_reused=prepared.reused)
