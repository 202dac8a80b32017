"""Letterbox geometry: fit a source image into a fixed model input (keeping aspect
ratio, centred, zero padding) and map coordinates back to source pixels.

Fixed-shape inputs are what let Triton batch images of different sizes.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Letterbox:
    src_w: int
    src_h: int
    dst_w: int
    dst_h: int
    new_w: int  # size of the resized content inside the model input
    new_h: int
    pad_x: int  # left padding, model pixels
    pad_y: int  # top padding, model pixels

    @property
    def scale_x(self) -> float:
        return self.new_w / self.src_w

    @property
    def scale_y(self) -> float:
        return self.new_h / self.src_h


def letterbox_for(src_w: int, src_h: int, dst_w: int, dst_h: int) -> Letterbox:
    if min(src_w, src_h, dst_w, dst_h) <= 0:
        raise ValueError(f"sizes must be positive: {src_w}x{src_h} -> {dst_w}x{dst_h}")
    scale = min(dst_w / src_w, dst_h / src_h)
    new_w = min(dst_w, max(1, round(src_w * scale)))
    new_h = min(dst_h, max(1, round(src_h * scale)))
    return Letterbox(src_w, src_h, dst_w, dst_h, new_w, new_h, (dst_w - new_w) // 2, (dst_h - new_h) // 2)


def letterbox_image(image: Image.Image, lb: Letterbox, out: np.ndarray | None = None) -> np.ndarray:
    """Resize `image` (RGB, whatever its decoded size: it spans the whole source) into the
    letterbox and return the [dst_h, dst_w, 3] uint8 model input."""
    if out is None:
        out = np.zeros((lb.dst_h, lb.dst_w, 3), dtype=np.uint8)
    pixels = np.asarray(image)
    if image.size != (lb.new_w, lb.new_h):
        # OpenCV's bilinear is 3-5x cheaper than Pillow's antialiased one, and it is what
        # the detectors were trained with. Below half size bilinear skips pixels (aliasing):
        # area averaging there. Reduced-scale JPEG decoding leaves most photos above half.
        shrink = lb.new_w < image.width / 2 or lb.new_h < image.height / 2
        pixels = cv2.resize(pixels, (lb.new_w, lb.new_h),
                            interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    out[lb.pad_y : lb.pad_y + lb.new_h, lb.pad_x : lb.pad_x + lb.new_w] = pixels
    return out


def points_to_source(points: np.ndarray, lb: Letterbox) -> np.ndarray:
    """[..., 2] model-input (x, y) -> source pixels (not clipped)."""
    points = np.asarray(points, dtype=np.float64)
    out = np.empty_like(points)
    out[..., 0] = (points[..., 0] - lb.pad_x) / lb.scale_x
    out[..., 1] = (points[..., 1] - lb.pad_y) / lb.scale_y
    return out


def points_to_model(points: np.ndarray, lb: Letterbox) -> np.ndarray:
    """[..., 2] source (x, y) -> model-input pixels."""
    points = np.asarray(points, dtype=np.float64)
    out = np.empty_like(points)
    out[..., 0] = points[..., 0] * lb.scale_x + lb.pad_x
    out[..., 1] = points[..., 1] * lb.scale_y + lb.pad_y
    return out


def boxes_to_source(boxes: np.ndarray, lb: Letterbox) -> np.ndarray:
    """[N, 4] model-input (x_min, y_min, x_max, y_max) -> source pixels, clipped to the image."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    out = points_to_source(boxes.reshape(-1, 2, 2), lb).reshape(-1, 4)
    out[:, 0::2] = np.clip(out[:, 0::2], 0, lb.src_w)
    out[:, 1::2] = np.clip(out[:, 1::2], 0, lb.src_h)
    return out


def boxes_to_model(boxes: np.ndarray, lb: Letterbox) -> np.ndarray:
    """[N, 4] source boxes -> model-input pixels."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return points_to_model(boxes.reshape(-1, 2, 2), lb).reshape(-1, 4)
