"""The SAM click engine: a served SAM-interface pair (`prelabel models add --family sam
NAME`, models NAME_encoder and NAME_decoder, services.modelkit.sam_model) answers SegmentClick
and ClickSession when the segmentation service's `click_model` setting names it.

Per image (the first click, or a session's start): decode, resize so the long side is 1024
(services.modelkit.sam_onnx.placed_image, in a worker thread), one NAME_encoder call; the
embedding (float32 [1, 256, 64, 64], 4 MiB) is held in the per-image state cache
(services.common.image_state) under the kind "sam-embedding:NAME", keyed by the image
bytes' SHA-256 and bounded by click_state_max_bytes, so a later click on the same bytes
calls only the decoder. An evicted image is encoded again.

Both Triton calls carry the request's priority (a session's: its start message's).

Per click: one NAME_decoder call with the clicks (positive 1, negative 0) and the box's
corners in the encoder's pixels and the previous low-resolution mask, if any. The decoder
answers its four masks; the candidates are SamPredictor's (mask 0, or masks 1-3 with
multimask_output: sam_onnx.chosen), best first by predicted IoU. Each candidate's mask is
its logits upscaled to the source (sam_onnx.upscaled) and cut at the click's
mask_threshold (a probability: logit > log(t / (1 - t)); the default 0.5 is SAM's logit 0);
its mask quality and score are the predicted IoU clipped to [0, 1]; its box the mask's
bounding box (the prompt box, else zeros, when the mask is empty); its low_res_mask the
float32 [256, 256] logits, which the next click may send back as previous_mask (another
shape or size is refused by services.segmentation.clicks.previous_mask). Provenance is
the decoder's, from Triton (the weights kind given at add time: random weights are said).

A SAM 2 pair (`--family sam2`: its encoder's config has the sam2_image_encoder head, read
from Triton at the first image) is served the same way with SAM 2's arithmetic
(services.modelkit.sam2_onnx; what differs is one family object per pair,
services.segmentation.sam_families): the image resized to 1024 x 1024, the three feature maps
(16 MiB) held per image and sent to every decoder call, the box's corners before the
clicks, and SAM2ImagePredictor's choice of masks (with one mask: mask 0 unless unstable,
then the best multimask candidate), each upscaled straight to the source size; the low-res
logits handed back clamped to [-32, 32] as SAM 2 hands them.

Large JPEGs are decoded at a reduced scale no smaller than 1024 px on the long side (as the
GrabCut engine does for its grid), so their embedding differs slightly from SamPredictor's
on a full decode; other formats are decoded whole.
"""
from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass

import numpy as np

from prelabel.core.errors import InvalidArgument
from prelabel.core.models.user_models import SAM_FAMILY_PARTS, sam_model_name
from prelabel.core.review import ReviewPolicy
from prelabel.v1 import common_pb2, segmentation_pb2
from services.common.image_state import ImageStateCache, StateKey, image_digest_async, read_only
from services.common.imaging import decode_image
from services.common.labeling import make_detection
from services.common.masks import BinaryMask, encode_rle, outer_polygons
from services.common.metrics import Metrics
from services.common.triton_client import TritonClient
from services.common.work import WorkBudget, run_bounded
from services.modelkit import sam_onnx
from services.modelkit.contract import (
    LOW_RES_MASKS,
    PREDICTED_IOUS,
    PROMPT_COUNT,
    PROMPT_MASK_GIVEN,
    PROMPT_MASKS,
    PROMPT_POINT_SIGNS,
    PROMPT_POINTS,
)
from services.segmentation.clicks import Click, placed_click, previous_mask
from services.segmentation.sam_families import SamFamily, family_of
from services.segmentation.settings import SegmentationSettings

LOW_RES_SHAPE = (sam_onnx.LOW_RES, sam_onnx.LOW_RES)
LOW_RES_DTYPE = np.dtype(np.float32)  # SAM's low-resolution logits


def sam_model_heads(pair: str) -> dict[str, frozenset[str]]:
    """The pair's two Triton models -> the contract heads each may implement (SAM's or SAM 2's)."""
    return {sam_model_name(pair, part): frozenset(parts[part][1] for parts in SAM_FAMILY_PARTS.values())
            for part in ("encoder", "decoder")}


@dataclass(frozen=True)
class EncoderImage:
    """An image as the encoder model takes it."""

    inputs: dict[str, np.ndarray]  # the encoder's inputs (the family's placement)
    width: int  # source size, after EXIF orientation
    height: int


@dataclass(frozen=True)
class SamImage:
    """An image as the SAM engine keeps it between clicks."""

    family: SamFamily
    features: dict[str, np.ndarray]  # the encoder's outputs the family keeps, by tensor name, [1, ...] read-only
    width: int
    height: int

    @property
    def nbytes(self) -> int:
        return sum(int(f.nbytes) for f in self.features.values())


@dataclass(frozen=True)
class PreparedSamImage:
    image: SamImage
    reused: bool  # found in the per-image state


@dataclass(frozen=True)
class DecoderAnswer:
    low_res: np.ndarray  # float32 [4, 256, 256] logits
    ious: np.ndarray  # float32 [4] predicted IoUs
    provenance: common_pb2.Provenance


def encoder_image(data: bytes, settings: SegmentationSettings, family: SamFamily) -> EncoderImage:
    """Decode and place for the family's encoder. CPU-bound: runs in a worker thread."""
    side = sam_onnx.LONG_SIDE
    decoded = decode_image(data, max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels,
                           target_size=(side, side))
    return EncoderImage(family.encoder_inputs(np.asarray(decoded.image)), decoded.width, decoded.height)


def logit(probability: float) -> float:
    return math.log(probability / (1.0 - probability))


class SamClicks:
    """The SAM engine (ClickEngine): per-image embeddings and the decoder's candidates."""

    def __init__(self, pair: str, settings: SegmentationSettings, state: ImageStateCache, triton: TritonClient,
                 metrics: Metrics):
        self.settings, self.state, self.triton, self.metrics = settings, state, triton, metrics
        self.encoder, self.decoder = sam_model_name(pair, "encoder"), sam_model_name(pair, "decoder")
        self.kind = f"sam-embedding:{pair}"

    async def family(self) -> SamFamily:
        """SAM's or SAM 2's, by the pair's encoder head (Triton's config; cached)."""
        return family_of((await self.triton.spec(self.encoder)).head)

    async def _encode(self, data: bytes, deadline: float, priority: common_pb2.Priority) -> SamImage:
        family = await self.family()
        placed = await asyncio.to_thread(encoder_image, data, self.settings, family)
        result = await self.triton.infer(self.encoder, placed.inputs, timeout_s=deadline - time.monotonic(),
                                         priority=priority)
        return SamImage(family, {t.name: read_only(result.outputs[t.name]) for t in family.features},
                        placed.width, placed.height)

    async def prepare(self, data: bytes, deadline: float, priority: common_pb2.Priority) -> PreparedSamImage:
        """The image's embedding: held, or encoded now (and held if it fits)."""
        settings = self.settings
        if not self.state.enabled or len(data) > settings.max_image_bytes:  # an oversize image: refused, never hashed
            return PreparedSamImage(await self._encode(data, deadline, priority), reused=False)
        key = StateKey(await image_digest_async(data, settings.inline_decode_max_bytes), self.kind)
        reused = key in self.state
        image = await self.state.get_or_compute(key, lambda: self._encode(data, deadline, priority),
                                                size_of=lambda image: image.nbytes)
        return PreparedSamImage(image, reused)

    async def decode(self, image: SamImage, click: Click, previous: np.ndarray | None, deadline: float,
                     priority: common_pb2.Priority) -> DecoderAnswer:
        spec = await self.triton.spec(self.decoder)
        rows = spec.inputs[PROMPT_POINTS.name][1]
        labels = np.r_[np.full(len(click.positive), sam_onnx.POSITIVE), np.full(len(click.negative), sam_onnx.NEGATIVE)]
        prompt = sam_onnx.SamPrompt(np.concatenate([click.positive, click.negative]), labels,
                                    None if click.box is None else np.asarray(click.box), previous)
        points = image.family.prompt_points(prompt, image.height, image.width)
        k = len(points.labels)
        if k > rows:
            raise InvalidArgument(f"{click.field}.points", f"{self.decoder} takes at most {rows} points "
                                                           f"(a box counts two), got {k}")
        coords = np.zeros((1, 1, rows, 2), np.float32)
        signs = np.full((1, 1, rows), -1, np.int32)
        coords[0, 0, :k], signs[0, 0, :k] = points.coords, points.labels
        masks = np.zeros((1, 1, *LOW_RES_SHAPE), np.float32)
        if previous is not None:
            masks[0, 0] = previous
        result = await self.triton.infer(self.decoder, {
            **{name: np.asarray(feature) for name, feature in image.features.items()}, PROMPT_POINTS.name: coords,
            PROMPT_POINT_SIGNS.name: signs, PROMPT_MASKS.name: masks,
            PROMPT_MASK_GIVEN.name: np.array([[int(previous is not None)]], np.int32),
            PROMPT_COUNT.name: np.array([[1]], np.int32)}, timeout_s=deadline - time.monotonic(), priority=priority)
        return DecoderAnswer(result.outputs[LOW_RES_MASKS.name][0, 0], result.outputs[PREDICTED_IOUS.name][0, 0],
                             result.provenance)

    def candidates(self, image: SamImage, click: Click, answer: DecoderAnswer, policy: ReviewPolicy,
                   budget: WorkBudget) -> list[segmentation_pb2.MaskCandidate]:
        """SamPredictor's (SAM2ImagePredictor's) candidates, best first (worker thread)."""
        family = image.family
        which = family.chosen(answer.low_res, answer.ious, click.multimask)
        low_res, scores = answer.low_res[which], answer.ious[which]
        handed_back = family.handed_back(low_res)
        cut = logit(click.mask_threshold)
        out = []
        for j in np.argsort(-scores, kind="stable"):
            budget.check()
            binary = family.upscaled(low_res[j:j + 1], image.height, image.width)[0] > cut
            mask = BinaryMask(binary, 0, 0, image.width, image.height)
            area = mask.area
            quality = float(np.clip(scores[j], 0.0, 1.0))
            polygons = outer_polygons(mask, budget) if click.polygons and area else []
            box = self._mask_box(binary) if area else (click.box or (0.0, 0.0, 0.0, 0.0))
            rle = encode_rle(mask)
            instance = segmentation_pb2.InstanceMask(
                detection=make_detection(box, click.category.id, click.category.name, quality, policy,
                                         answer.provenance),
                mask=common_pb2.RleMask(size=rle["size"], counts=rle["counts"]),
                area=area,
                mask_quality=quality,
                polygons=[common_pb2.Polygon(points=p) for p in polygons],
            )
            low = segmentation_pb2.LowResMask(data=np.ascontiguousarray(handed_back[j], LOW_RES_DTYPE).tobytes(),
                                              shape=list(LOW_RES_SHAPE))
            out.append(segmentation_pb2.MaskCandidate(instance=instance, low_res_mask=low))
        return out

    @staticmethod
    def _mask_box(binary: np.ndarray) -> tuple[float, float, float, float]:
        rows, cols = np.nonzero(binary.any(axis=1))[0], np.nonzero(binary.any(axis=0))[0]
        return float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)

    async def answer(self, prepared: PreparedSamImage, click: Click, *, image_id: str, policy: ReviewPolicy,
                     deadline: float, priority: common_pb2.Priority) -> segmentation_pb2.ClickResponse:
        """The response to one click on a prepared image."""
        image = prepared.image
        click = placed_click(click, image.width, image.height)
        previous = previous_mask(click, LOW_RES_SHAPE, LOW_RES_DTYPE)
        started = time.perf_counter()
        answer = await self.decode(image, click, previous, deadline, priority)
        budget = WorkBudget(deadline, self.settings.max_polygon_vertices)
        candidates = await run_bounded(self.candidates, image, click, answer, policy, budget=budget)
        self.metrics.stage.labels(self.metrics.service, "click").observe(time.perf_counter() - started)
        return segmentation_pb2.ClickResponse(
            image_id=image_id, image_size=common_pb2.ImageSize(width=image.width, height=image.height),
            candidates=candidates, provenance=answer.provenance, image_state_reused=prepared.reused)
