"""Instance masks on the CPU profile without a COCO mask model: the `promptable_masks`
head from real, published parts.

- persons: MediaPipe's selfie segmentation (ONNX, Apache-2.0) run on a square crop
  around the person (1.25x its box, resized to 256), so each person instance gets its
  own mask that follows the body and excludes the background inside the box;
- every other category: OpenCV's GrabCut seeded with the box (no weights: a colour model
  of inside vs outside the box, iterated), on the crop downscaled so its long side is at
  most `grabcut_max_side` px (full-resolution GrabCut took seconds per box). GrabCut gives
  hard labels and no confidence: its foreground gets probability `grabcut_probability`
  (0.6), so its masks' quality says "draft" and, prompted, the default review bands send
  them to review instead of auto-accepting them;
- automatic mode finds the instances with NanoDet (same weights as `coco_detector`) on
  the model input resized to NanoDet's 416 px; prompted mode takes the caller's boxes
  and categories, and for a box without a category uses the class of the NanoDet box
  that overlaps it most (IoU >= 0.3), else GrabCut with category 0.

MASKS rows are probabilities over each row's box (M x M); the service pastes them into
source pixels. Items of a Triton batch run one by one (NanoDet's graph is batch-1); the
person crops of an item go through selfie as one batch.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from services.modelkit.contract import (
    BOXES,
    COUNT,
    IMAGE,
    LABELS,
    MASKS,
    PROMPT_BOXES,
    PROMPT_COUNT,
    PROMPT_LABELS,
    SCORES,
)
from services.modelkit.grabcut_clicks import DEFAULT_PROBABILITY
from services.modelkit.movenet import square_crop
from services.modelkit.nanodet import NanoDet, iou_one_to_many
from services.modelkit.onnx_session import combine, open_session
from services.modelkit.parameters import BoxFloorParameters, require
from services.modelkit.triton_base import BatchedModel, pad_rows

PERSON = 1
SELFIE_SIZE = 256
PERSON_CROP_SCALE = 1.25
GRABCUT_MARGIN = 0.15
CLASSIFY_MIN_IOU = 0.3


def _cv2():
    import cv2

    return cv2


def box_grid(mask: np.ndarray, box_in_mask: np.ndarray, size: int) -> np.ndarray:
    """Resample the part of `mask` under `box_in_mask` (xyxy, mask pixels) to size x size."""
    cv2 = _cv2()
    x0, y0, x1, y1 = (float(v) for v in box_in_mask)
    w, h = max(x1 - x0, 1e-3), max(y1 - y0, 1e-3)
    # Affine map of the output grid's pixel centres onto the box.
    m = np.array([[w / size, 0, x0 + w / size / 2 - 0.5], [0, h / size, y0 + h / size / 2 - 0.5]], np.float32)
    return cv2.warpAffine(mask.astype(np.float32), m, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)


def content_bounds(image: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the non-zero pixels: the photo inside the letterbox padding."""
    rows = np.nonzero(image.any(axis=(1, 2)))[0]
    cols = np.nonzero(image.any(axis=(0, 2)))[0]
    if not len(rows):
        return 0, 0, image.shape[1], image.shape[0]
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def grabcut_probs(image: np.ndarray, box: np.ndarray, size: int, max_side: int, iterations: int,
                  bounds: tuple[int, int, int, int] | None = None, probability: float = 1.0) -> np.ndarray:
    """GrabCut foreground over `box`, as a size x size grid: `probability` on foreground
    pixels, 0 elsewhere. The crop stays inside `bounds` (the photo): black letterbox
    padding in the background sample would make every dark object background."""
    cv2 = _cv2()
    bx0, by0, bx1, by1 = bounds or (0, 0, image.shape[1], image.shape[0])
    bw, bh = box[2] - box[0], box[3] - box[1]
    if bw < 2 or bh < 2:
        return np.zeros((size, size), np.float32)
    mx, my = bw * GRABCUT_MARGIN, bh * GRABCUT_MARGIN
    x0, y0 = int(max(bx0, np.floor(box[0] - mx))), int(max(by0, np.floor(box[1] - my)))
    x1, y1 = int(min(bx1, np.ceil(box[2] + mx))), int(min(by1, np.ceil(box[3] + my)))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return np.zeros((size, size), np.float32)
    crop = image[y0:y1, x0:x1]
    scale = min(1.0, max_side / max(crop.shape[:2]))
    if scale < 1.0:
        crop = cv2.resize(crop, (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale))),
                          interpolation=cv2.INTER_AREA)
    local = (np.array([box[0] - x0, box[1] - y0, box[2] - x0, box[3] - y0]) * scale)
    rect = (int(local[0]), int(local[1]), max(1, int(local[2] - local[0])), max(1, int(local[3] - local[1])))
    # A rectangle touching every side of the crop leaves GrabCut no background sample.
    if rect[2] >= crop.shape[1] - 1 and rect[3] >= crop.shape[0] - 1:
        rect = (1, 1, max(1, crop.shape[1] - 2), max(1, crop.shape[0] - 2))
    mask = np.zeros(crop.shape[:2], np.uint8)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    # GrabCut seeds its colour models with k-means on OpenCV's global RNG: reseed so a
    # box gets the same mask whatever ran before it (batch of 4 == four batches of 1).
    cv2.setRNGSeed(0)
    try:
        cv2.grabCut(np.ascontiguousarray(crop[..., ::-1]), mask, rect, bgd, fgd, iterations, cv2.GC_INIT_WITH_RECT)
    except cv2.error:
        return np.zeros((size, size), np.float32)
    fg = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.float32)
    return box_grid(fg, local, size) * np.float32(probability)


class SelfieSegmenter:
    def __init__(self, threads: int, cache_dir=None):
        self.session, self.info = open_session("selfie", threads, cache_dir)
        self.input_name = self.session.get_inputs()[0].name

    def person_probs(self, image: np.ndarray, boxes: list[np.ndarray], size: int) -> list[np.ndarray]:
        """One size x size grid per person box; every crop of the image in one batch (the
        selfie graph is converted with a batch axis)."""
        if not boxes:
            return []
        cv2 = _cv2()
        crops, frames = [], []
        for box in boxes:
            crop, (x0, y0, side) = square_crop(image, box, PERSON_CROP_SCALE)
            crops.append(cv2.resize(crop, (SELFIE_SIZE, SELFIE_SIZE), interpolation=cv2.INTER_AREA
                                    if side > SELFIE_SIZE else cv2.INTER_LINEAR))
            frames.append((x0, y0, side))
        probs = self.session.run(None, {self.input_name: np.stack(crops).astype(np.float32) / 255.0})[0][..., 0]
        out = []
        for p, box, (x0, y0, side) in zip(probs, boxes, frames, strict=False):
            local = np.array([box[0] - x0, box[1] - y0, box[2] - x0, box[3] - y0]) * SELFIE_SIZE / side
            out.append(box_grid(p, local, size))
        return out


@dataclass(frozen=True, kw_only=True)
class CpuMasksParameters(BoxFloorParameters):
    box_score_floor: float = 0.25
    """Automatic mode: instances NanoDet must score at least this to get a mask."""

    grabcut_max_side: int = 128
    """GrabCut runs on the box crop downscaled to this long side (px)."""

    grabcut_iterations: int = 5
    """GrabCut iterations per box."""

    grabcut_probability: float = DEFAULT_PROBABILITY
    """Probability of GrabCut's foreground pixels. Its labels are hard 0/1 and come with no
    confidence; a weightless colour model must not pass for a sure mask (mask quality 1.0
    would auto-accept it)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.grabcut_max_side >= 1, "grabcut_max_side", self.grabcut_max_side, "must be >= 1")
        require(self.grabcut_iterations >= 1, "grabcut_iterations", self.grabcut_iterations, "must be >= 1")
        require(0.0 < self.grabcut_probability <= 1.0, "grabcut_probability", self.grabcut_probability,
                "must be in (0, 1]")


class CpuSegmenter(BatchedModel[CpuMasksParameters]):
    """`promptable_masks` head."""

    parameters_class = CpuMasksParameters

    def load(self, params: CpuMasksParameters, settings, device):
        _cv2().setNumThreads(max(params.num_threads, 1))
        self.detector = NanoDet(params.num_threads, settings.models_dir)
        self.selfie = SelfieSegmenter(params.num_threads, settings.models_dir)
        self.max_instances = self.output_dims(SCORES)[0]
        self.mask_size = self.output_dims(MASKS)[1]
        self.max_prompts = self.input_dims(PROMPT_BOXES)[0]
        self.score_floor = params.box_score_floor
        self.grabcut_max_side = params.grabcut_max_side
        self.grabcut_iterations = params.grabcut_iterations
        self.grabcut_probability = params.grabcut_probability
        return combine([self.detector.info, self.selfie.info],
                       "nanodet boxes + selfie person masks + grabcut (opencv) for other classes")

    def _detect(self, image: np.ndarray, floor: float):
        cv2 = _cv2()
        size = image.shape[0]
        net = self.detector.input_size
        small = cv2.resize(image, (net, net), interpolation=cv2.INTER_AREA) if size != net else image
        boxes, scores, labels = self.detector.detect(small, floor, self.max_instances)
        return boxes * (size / net), scores, labels

    def _masks(self, image, boxes, labels) -> list[np.ndarray]:
        """Selfie for the persons (one batch), GrabCut for the rest, in row order."""
        bounds = content_bounds(image)
        persons = [k for k, lab in enumerate(labels) if int(lab) == PERSON]
        masks: list[np.ndarray | None] = [None] * len(boxes)
        for k, probs in zip(persons, self.selfie.person_probs(image, [boxes[k] for k in persons], self.mask_size), strict=False):
            masks[k] = probs
        for k, box in enumerate(boxes):
            if masks[k] is None:
                masks[k] = grabcut_probs(image, box, self.mask_size, self.grabcut_max_side,
                                         self.grabcut_iterations, bounds, self.grabcut_probability)
        return [m for m in masks if m is not None]

    def _prompted(self, image, prompts, labels):
        scores = np.zeros(len(prompts), np.float32)
        labels = labels.astype(np.int32).copy()
        if (labels <= 0).any():
            det_boxes, det_scores, det_labels = self._detect(image, 0.05)
            for k in np.nonzero(labels <= 0)[0]:
                if not len(det_boxes):
                    break
                overlap = iou_one_to_many(prompts[k], det_boxes)
                j = int(np.argmax(overlap))
                if overlap[j] >= CLASSIFY_MIN_IOU:
                    labels[k], scores[k] = det_labels[j], det_scores[j]
        labels = np.maximum(labels, 0)
        masks = self._masks(image, prompts, labels)
        return prompts, scores, labels, masks

    def infer(self, inputs):
        n, m = self.max_instances, self.mask_size
        out: dict[str, list] = {t.name: [] for t in (BOXES, SCORES, LABELS, MASKS, COUNT)}
        size = inputs[IMAGE.name].shape[1]
        for i, image in enumerate(inputs[IMAGE.name]):
            count = int(np.clip(inputs[PROMPT_COUNT.name][i].reshape(-1)[0], 0, self.max_prompts))
            if count:
                prompts = np.clip(inputs[PROMPT_BOXES.name][i, :count].astype(np.float32), 0, size)
                boxes, scores, labels, masks = self._prompted(image, prompts, inputs[PROMPT_LABELS.name][i, :count])
            else:
                boxes, scores, labels = self._detect(image, self.score_floor)
                masks = self._masks(image, boxes, labels)
            out[BOXES.name].append(pad_rows(np.asarray(boxes, np.float32).reshape(-1, 4), n))
            out[SCORES.name].append(pad_rows(np.asarray(scores, np.float32), n))
            out[LABELS.name].append(pad_rows(np.asarray(labels, np.int32), n))
            out[MASKS.name].append(pad_rows(np.asarray(masks, np.float32).reshape(-1, m, m), n))
            out[COUNT.name].append([min(n, len(scores))])
        arrays = {k: np.stack(v) for k, v in out.items()}
        arrays[COUNT.name] = arrays[COUNT.name].astype(np.int32)
        return arrays
