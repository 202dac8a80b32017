"""Reference implementations the mask tests compare services.common.masks against: the
whole-crop paste that `paste_binary` computes strip by strip, the full-size mask, and
pycocotools' own RLE of it."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pycocotools import mask as coco_mask

from services.common.masks import BinaryMask, bilinear_weights, pixel_span


@dataclass(frozen=True)
class PastedMask:
    """Mask probabilities of the source pixels inside a box: `probs[r, c]` is pixel
    (x0 + c, y0 + r) of the source image."""

    probs: np.ndarray  # float32 [rows, cols]
    x0: int
    y0: int
    width: int  # source image size
    height: int


def paste_mask(probs: np.ndarray, box, width: int, height: int) -> PastedMask:
    """Paste an [M, M] (or [Mh, Mw]) probability grid covering `box` (x_min, y_min,
    x_max, y_max in source pixels, possibly reaching outside the image) into the
    source image of `width` x `height`, in one piece."""
    probs = np.asarray(probs, dtype=np.float64)
    x_min, y_min, x_max, y_max = (float(v) for v in box)
    c0, c1 = pixel_span(x_min, x_max, width)
    r0, r1 = pixel_span(y_min, y_max, height)
    if c1 <= c0 or r1 <= r0:
        return PastedMask(np.zeros((0, 0), np.float32), c0, r0, width, height)
    wy = bilinear_weights(r0, r1, y_min, y_max, probs.shape[0])
    wx = bilinear_weights(c0, c1, x_min, x_max, probs.shape[1])
    crop = (wy @ probs) @ wx.T
    return PastedMask(crop.astype(np.float32), c0, r0, width, height)


def binarize(pasted: PastedMask, threshold: float) -> BinaryMask:
    return BinaryMask(pasted.probs >= threshold, pasted.x0, pasted.y0, pasted.width, pasted.height)


def full_mask(mask: BinaryMask) -> np.ndarray:
    """The whole [height, width] uint8 mask."""
    out = np.zeros((mask.height, mask.width), dtype=np.uint8)
    rows, cols = mask.crop.shape
    out[mask.y0:mask.y0 + rows, mask.x0:mask.x0 + cols] = mask.crop
    return out


def rle_from_full(mask: np.ndarray) -> dict:
    """pycocotools' own encoding of a full [h, w] mask."""
    rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"]}


def polygon_area(points: list[float]) -> float:
    """Shoelace area of a flattened polygon."""
    xs, ys = np.asarray(points[0::2]), np.asarray(points[1::2])
    return float(abs(np.dot(xs, np.roll(ys, -1)) - np.dot(ys, np.roll(xs, -1))) / 2)
