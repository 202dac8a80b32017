"""SAM 2.1's ONNX interface (prelabel/core/models/convert/sam2_to_onnx.py, the layout of
community SAM 2 exports): the image into the encoder, prompts into the decoder and its
answer out (numpy, Pillow and OpenCV). Checked against Meta's SAM2ImagePredictor
(set_image + predict) by tests/tools/test_sam2_reference.py (onnxruntime) and
tests/tools/test_sam2_clicks.py (Triton and the segmentation service). What differs from SAM
(services.modelkit.sam_onnx) is said here; the prompt and answer types are SAM's.

- The encoder's input [1, 3, 1024, 1024] float32: the RGB image resized to 1024 x 1024
  (both sides: SAM 2 does not keep the aspect ratio; Pillow bilinear), scaled to [0, 1]
  and normalised by ImageNet's mean and std. Its outputs image_embed [1, 256, 64, 64],
  high_res_feats_0 [1, 32, 256, 256] and high_res_feats_1 [1, 64, 128, 128] are what a
  server keeps per image between clicks (16 MiB).
- Points are scaled by 1024 / width and 1024 / height; every prompt gets the padding
  point (0, 0) labelled -1, a box too (SAM2ImagePredictor passes a box as two points);
  a box's corners come before the clicks.
- The decoder answers all four masks. With multimask, masks 1-3; without, mask 0 unless
  its stability (the area above logit +0.05 over the area above -0.05, on the 256 x 256
  logits) is below 0.98, then the multimask candidate of the highest predicted IoU
  (SAM 2's dynamic_multimask_via_stability, on in SAM2ImagePredictor's build_sam2).
- Source-size masks: the 256 x 256 logits resized straight to the source size (bilinear,
  half-pixel centres); the low-resolution logits handed back are clamped to [-32, 32].
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from services.modelkit.sam_onnx import (
    BOX_BOTTOM_RIGHT,
    BOX_TOP_LEFT,
    LONG_SIDE,
    LOW_RES,
    MASK_THRESHOLD,
    PADDING,
    SamCandidates,
    SamPoints,
    SamPrompt,
)

SIDE = LONG_SIDE  # the encoder's input is SIDE x SIDE
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
STABILITY_DELTA, STABILITY_THRESHOLD = 0.05, 0.98
LOGIT_CLAMP = 32.0


@dataclass(frozen=True)
class Sam2Features:
    """The encoder's outputs for one image, batch of one."""

    image_embed: np.ndarray  # float32 [1, 256, 64, 64]
    high_res_feats_0: np.ndarray  # float32 [1, 32, 256, 256]
    high_res_feats_1: np.ndarray  # float32 [1, 64, 128, 128]


def placed_image(rgb: np.ndarray) -> np.ndarray:
    """An RGB uint8 [H, W, 3] image resized to [1024, 1024, 3] uint8: what a server sends
    its encoder model."""
    return np.asarray(Image.fromarray(rgb).resize((SIDE, SIDE), Image.Resampling.BILINEAR))


def normalized(placed: np.ndarray) -> np.ndarray:
    """The encoder's input [1, 3, 1024, 1024] float32 from a placed image."""
    picture = np.asarray(placed, np.float32) / 255.0
    return ((picture - MEAN) / STD).transpose(2, 0, 1)[None].astype(np.float32)


def encoder_input(rgb: np.ndarray) -> np.ndarray:
    return normalized(placed_image(rgb))


def prompt_points(prompt: SamPrompt, height: int, width: int) -> SamPoints:
    """The prompt's box corners then clicks in the encoder's pixels, with SAM's labels (no
    padding point), for a source image of height x width."""
    coords, labels = [], []
    if prompt.box is not None:
        coords.append(np.asarray(prompt.box, np.float64).reshape(2, 2))
        labels.append(np.array([BOX_TOP_LEFT, BOX_BOTTOM_RIGHT], np.float64))
    coords.append(np.asarray(prompt.points, np.float64).reshape(-1, 2))
    labels.append(np.asarray(prompt.labels, np.float64).reshape(-1))
    scaled = np.concatenate(coords) * np.array([SIDE / width, SIDE / height])
    return SamPoints(scaled.astype(np.float32), np.concatenate(labels).astype(np.float32))


def onnx_inputs(points: SamPoints, features: Sam2Features, previous: np.ndarray | None) -> dict[str, np.ndarray]:
    """The decoder's inputs, with the padding point every prompt gets."""
    coords = np.concatenate([points.coords, np.zeros((1, 2), np.float32)])
    labels = np.concatenate([points.labels, np.array([PADDING], np.float32)])
    has_mask = previous is not None
    return {
        "image_embed": np.asarray(features.image_embed, np.float32),
        "high_res_feats_0": np.asarray(features.high_res_feats_0, np.float32),
        "high_res_feats_1": np.asarray(features.high_res_feats_1, np.float32),
        "point_coords": coords[None].astype(np.float32),
        "point_labels": labels[None].astype(np.float32),
        "mask_input": (np.asarray(previous, np.float32) if has_mask
                       else np.zeros((LOW_RES, LOW_RES), np.float32))[None, None],
        "has_mask_input": np.array([1.0 if has_mask else 0.0], np.float32),
    }


def chosen(low_res: np.ndarray, ious: np.ndarray, multimask: bool) -> list[int]:
    """Which of the decoder's four masks ([4, 256, 256] logits, [4] predicted IoUs)
    SAM2ImagePredictor answers with."""
    if multimask:
        return [1, 2, 3]
    single = np.asarray(low_res[0]).reshape(-1)
    inner, outer = int((single > STABILITY_DELTA).sum()), int((single > -STABILITY_DELTA).sum())
    stability = inner / outer if outer > 0 else 1.0
    return [0] if stability >= STABILITY_THRESHOLD else [1 + int(np.argmax(ious[1:]))]


def upscaled(low_res: np.ndarray, height: int, width: int) -> np.ndarray:
    """Low-resolution logits [n, 256, 256] -> logits [n, height, width] in source pixels."""
    return np.stack([cv2.resize(np.asarray(grid, np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
                     for grid in low_res])


def candidates(low_res_masks: np.ndarray, iou_predictions: np.ndarray, height: int, width: int,
               multimask: bool) -> SamCandidates:
    """The answer from the decoder's outputs ([1, 4, 256, 256], [1, 4]), in
    SAM2ImagePredictor's order."""
    which = chosen(low_res_masks[0], iou_predictions[0], multimask)
    low_res = np.asarray(low_res_masks[0, which], np.float32)
    return SamCandidates(masks=upscaled(low_res, height, width) > MASK_THRESHOLD,
                         scores=np.asarray(iou_predictions[0, which], np.float32),
                         low_res=np.clip(low_res, -LOGIT_CLAMP, LOGIT_CLAMP))
