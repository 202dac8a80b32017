"""SAM's published ONNX interface (an encoder and Meta's `SamOnnxModel` decoder export, or
any pair of the same interface: MobileSAM, EdgeSAM, EfficientViT-SAM exports): the
image into the encoder, prompts into the decoder and its answer out (numpy, Pillow and
OpenCV). Checked against Meta's own `SamPredictor` (set_image + predict) by
tests/tools/test_sam_reference.py.

The encoder's input [1, 3, 1024, 1024] float32: the RGB image resized (Pillow bilinear)
so its long side is 1024, normalised by SAM's pixel mean and std, zero-padded at the
bottom and right. Its output, image_embeddings [1, 256, 64, 64], is what a server keeps
per image between clicks (4 MiB). A server splits the input in two: `placed_image` (the
resize, where the image is decoded) and `normalized` (in the encoder model), so a uint8
image travels to the model rather than the float tensor.

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
A server that runs the decoder in a model of its own sends the low-resolution masks back
and makes the source-size masks itself (`upscaled`, as SAM's postprocess_masks does), so
the model's outputs have fixed shapes whatever the image's size.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
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


def placed_image(rgb: np.ndarray, source_size: tuple[int, int] | None = None) -> np.ndarray:
    """An RGB uint8 [H, W, 3] image resized so its long side is 1024, at the top-left of
    a [1024, 1024, 3] uint8 canvas (zeros elsewhere): what a server sends its encoder
    model, with the resized size (`resized_size`). `source_size` (height, width): the
    source's size when `rgb` was decoded at a reduced scale (a large JPEG)."""
    new_h, new_w = resized_size(*(source_size or rgb.shape[:2]))
    out = np.zeros((LONG_SIDE, LONG_SIDE, 3), np.uint8)
    out[:new_h, :new_w] = np.asarray(Image.fromarray(rgb).resize((new_w, new_h), Image.Resampling.BILINEAR))
    return out


def normalized(placed: np.ndarray, new_h: int, new_w: int) -> np.ndarray:
    """The encoder's input from a placed image: its top-left new_h x new_w pixels
    normalised by SAM's mean and std, zeros elsewhere (the padding is zero after
    normalisation, as in SAM)."""
    out = np.zeros((1, 3, LONG_SIDE, LONG_SIDE), np.float32)
    picture = np.asarray(placed[:new_h, :new_w], np.float32)
    out[0, :, :new_h, :new_w] = ((picture - PIXEL_MEAN) / PIXEL_STD).transpose(2, 0, 1)
    return out


def encoder_input(rgb: np.ndarray) -> np.ndarray:
    """The encoder's input for an RGB uint8 [H, W, 3] image."""
    return normalized(placed_image(rgb), *resized_size(*rgb.shape[:2]))


def to_encoder_input(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """Source pixels -> pixels of the encoder's input (x, y)."""
    new_h, new_w = resized_size(height, width)
    out = np.asarray(points, np.float64).copy()
    out[..., 0] *= new_w / width
    out[..., 1] *= new_h / height
    return out


@dataclass(frozen=True)
class SamPoints:
    """A prompt's clicks and box corners in the encoder's input pixels, with SAM's labels
    (no padding point)."""

    coords: np.ndarray  # float32 [k, 2] (x, y)
    labels: np.ndarray  # float32 [k]: POSITIVE, NEGATIVE, BOX_TOP_LEFT, BOX_BOTTOM_RIGHT


def prompt_points(prompt: SamPrompt, height: int, width: int) -> SamPoints:
    """The prompt's points and box as the decoder reads them, for a source image of
    height x width."""
    coords = [np.asarray(prompt.points, np.float64).reshape(-1, 2)]
    labels = [np.asarray(prompt.labels, np.float64).reshape(-1)]
    if prompt.box is not None:
        coords.append(np.asarray(prompt.box, np.float64).reshape(2, 2))
        labels.append(np.array([BOX_TOP_LEFT, BOX_BOTTOM_RIGHT], np.float64))
    return SamPoints(to_encoder_input(np.concatenate(coords), height, width).astype(np.float32),
                     np.concatenate(labels).astype(np.float32))


def onnx_inputs(points: SamPoints, embedding: np.ndarray, previous: np.ndarray | None,
                orig_size: tuple[int, int]) -> dict[str, np.ndarray]:
    """The decoder's inputs: SamPredictor's padding point (0, 0) labelled -1 is added
    when there is no box; `orig_size` (height, width) sizes only its `masks` output."""
    coords, labels = points.coords, points.labels
    if not np.isin(labels, (BOX_TOP_LEFT, BOX_BOTTOM_RIGHT)).any():
        coords = np.concatenate([coords, np.zeros((1, 2), np.float32)])
        labels = np.concatenate([labels, np.array([PADDING], np.float32)])
    has_mask = previous is not None
    return {
        "image_embeddings": np.asarray(embedding, np.float32),
        "point_coords": coords[None].astype(np.float32),
        "point_labels": labels[None].astype(np.float32),
        "mask_input": (np.asarray(previous, np.float32) if has_mask
                       else np.zeros((LOW_RES, LOW_RES), np.float32))[None, None],
        "has_mask_input": np.array([1.0 if has_mask else 0.0], np.float32),
        "orig_im_size": np.array(orig_size, np.float32),
    }


def decoder_inputs(prompt: SamPrompt, embedding: np.ndarray, height: int, width: int) -> dict[str, np.ndarray]:
    return onnx_inputs(prompt_points(prompt, height, width), embedding, prompt.previous, (height, width))


def chosen(multimask: bool) -> slice:
    """The decoder's masks SamPredictor answers with: 1-3 with `multimask`, else 0."""
    return slice(1, None) if multimask else slice(0, 1)


def upscaled(low_res: np.ndarray, height: int, width: int) -> np.ndarray:
    """Low-resolution logits [n, 256, 256] -> logits [n, height, width] in source pixels,
    as SAM's postprocess_masks (and the decoder export's `masks`) make them: bilinear
    (half-pixel centres) to 1024 x 1024, the resized image's part, bilinear to the source
    size."""
    new_h, new_w = resized_size(height, width)
    out = np.empty((len(low_res), height, width), np.float32)
    for i, grid in enumerate(np.asarray(low_res, np.float32)):
        full = cv2.resize(grid, (LONG_SIDE, LONG_SIDE), interpolation=cv2.INTER_LINEAR)
        out[i] = cv2.resize(np.ascontiguousarray(full[:new_h, :new_w]), (width, height),
                            interpolation=cv2.INTER_LINEAR)
    return out


def candidates(masks: np.ndarray, iou_predictions: np.ndarray, low_res_masks: np.ndarray,
               multimask: bool) -> SamCandidates:
    """The answer from the decoder's outputs: masks 1-3 with `multimask`, else mask 0."""
    which = chosen(multimask)
    return SamCandidates(
        masks=np.asarray(masks[0, which]) > MASK_THRESHOLD,
        scores=np.asarray(iou_predictions[0, which], np.float32),
        low_res=np.asarray(low_res_masks[0, which], np.float32),
    )
