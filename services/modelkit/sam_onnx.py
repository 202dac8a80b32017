"""SAM's published ONNX interface (an encoder and Meta's `SamOnnxModel` decoder export, or
any pair of the same interface: MobileSAM, EdgeSAM, EfficientViT-SAM exports): the
image into the encoder, prompts into the decoder and its answer out, numpy and Pillow
only. Checked against Meta's own `SamPredictor` (set_image + predict) by
tests/tools/test_sam_reference.py.

The encoder's input [1, 3, 1024, 1024] float32: the RGB image resized (Pillow bilinear)
so its long side is 1024, normalised by SAM's pixel mean and std, zero-padded at the
bottom and right. Its output, image_embeddings [1, 256, 64, 64], is what a server keeps
per image between clicks (4 MiB).

The decoder's inputs (batch of one prompt set):
  image_embeddings [1, 256, 64, 64]  the encoder's output for the image
  point_coords     [1, K, 2]         (x, y) on the encoder's input: the source image
                                     resized so its long side is 1024 (no padding shift)
  point_labels     [1, K]            1 on the object, 0 background, 2/3 a box's top-left /
                                     bottom-right corner, -1 padding
  mask_input       [1, 1, 256, 256]  the previous answer's low-resolution logits (zeros)
  has_mask_input   [1]               1 when mask_input is a previous answer
  orig_im_size     [2]               source (height, width)
Outputs (exported with return_single_mask=False, so all of the decoder's masks come out and
the choice is made here, as SamPredictor makes it):
  masks [1, 4, H, W] logits in source pixels, iou_predictions [1, 4], low_res_masks
  [1, 4, 256, 256]. Mask 0 answers an unambiguous prompt; masks 1-3 are the multimask
  candidates (part, object, whole).

As in SamPredictor, a prompt without a box gets one padding point (0, 0) labelled -1.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

LONG_SIDE = 1024  # the encoder's input size
LOW_RES = 256  # the low-resolution mask's side
MASK_THRESHOLD = 0.0  # on the logits

PIXEL_MEAN = np.array([123.675, 116.28, 103.53], np.float32)
PIXEL_STD = np.array([58.395, 57.12, 57.375], np.float32)

POSITIVE, NEGATIVE, BOX_TOP_LEFT, BOX_BOTTOM_RIGHT, PADDING = 1, 0, 2, 3, -1


@dataclass(frozen=True)
class SamPrompt:
    """One prompt set in source pixels."""

    points: np.ndarray  # float [k, 2] (x, y)
    labels: np.ndarray  # int [k]: POSITIVE or NEGATIVE
    box: np.ndarray | None  # float [4] x_min, y_min, x_max, y_max
    previous: np.ndarray | None  # float32 [256, 256]: a low_res_masks row of an earlier answer


@dataclass(frozen=True)
class SamCandidates:
    """The decoder's answer, as SamPredictor.predict returns it (its order)."""

    masks: np.ndarray  # bool [n, H, W] in source pixels
    scores: np.ndarray  # float32 [n]: predicted IoU
    low_res: np.ndarray  # float32 [n, 256, 256] logits, for the next refinement


def resized_size(height: int, width: int, long_side: int = LONG_SIDE) -> tuple[int, int]:
    """(height, width) of the source image resized so its long side is `long_side`
    (segment_anything's ResizeLongestSide.get_preprocess_shape, same rounding)."""
    scale = long_side / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def encoder_input(rgb: np.ndarray) -> np.ndarray:
    """The encoder's input for an RGB uint8 [H, W, 3] image."""
    height, width = rgb.shape[:2]
    new_h, new_w = resized_size(height, width)
    resized = np.asarray(Image.fromarray(rgb).resize((new_w, new_h), Image.Resampling.BILINEAR), np.float32)
    out = np.zeros((1, 3, LONG_SIDE, LONG_SIDE), np.float32)
    out[0, :, :new_h, :new_w] = ((resized - PIXEL_MEAN) / PIXEL_STD).transpose(2, 0, 1)
    return out


def to_encoder_input(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """Source pixels -> pixels of the encoder's input (x, y)."""
    new_h, new_w = resized_size(height, width)
    out = np.asarray(points, np.float64).copy()
    out[..., 0] *= new_w / width
    out[..., 1] *= new_h / height
    return out


def decoder_inputs(prompt: SamPrompt, embedding: np.ndarray, height: int, width: int) -> dict[str, np.ndarray]:
    coords = [np.asarray(prompt.points, np.float64).reshape(-1, 2)]
    labels = [np.asarray(prompt.labels, np.float64).reshape(-1)]
    if prompt.box is not None:
        coords.append(np.asarray(prompt.box, np.float64).reshape(2, 2))
        labels.append(np.array([BOX_TOP_LEFT, BOX_BOTTOM_RIGHT], np.float64))
    else:
        coords.append(np.zeros((1, 2)))
        labels.append(np.array([PADDING], np.float64))
    point_coords = np.concatenate(coords)
    point_labels = np.concatenate(labels)
    real = point_labels != PADDING  # the padding point stays at (0, 0)
    point_coords[real] = to_encoder_input(point_coords[real], height, width)
    has_mask = prompt.previous is not None
    return {
        "image_embeddings": np.asarray(embedding, np.float32),
        "point_coords": point_coords[None].astype(np.float32),
        "point_labels": point_labels[None].astype(np.float32),
        "mask_input": (np.asarray(prompt.previous, np.float32) if has_mask
                       else np.zeros((LOW_RES, LOW_RES), np.float32))[None, None],
        "has_mask_input": np.array([1.0 if has_mask else 0.0], np.float32),
        "orig_im_size": np.array([height, width], np.float32),
    }


def candidates(masks: np.ndarray, iou_predictions: np.ndarray, low_res_masks: np.ndarray,
               multimask: bool) -> SamCandidates:
    """The answer from the decoder's outputs: masks 1-3 with `multimask`, else mask 0."""
    chosen = slice(1, None) if multimask else slice(0, 1)
    return SamCandidates(
        masks=np.asarray(masks[0, chosen]) > MASK_THRESHOLD,
        scores=np.asarray(iou_predictions[0, chosen], np.float32),
        low_res=np.asarray(low_res_masks[0, chosen], np.float32),
    )
