"""Ultralytics ONNX exports in and out of the graph, as Ultralytics' own predictor does it
(ultralytics 8.4: `LetterBox`, `non_max_suppression`, `process_mask`, the RT-DETR and
end-to-end postprocessing), in numpy (+ OpenCV for the resize): no torch, no Triton.

- `fit_to_input`: the model input of one image -- letterboxed (aspect kept, centred, padded
  with 114) or, for RT-DETR, stretched -- and its geometry (services.common.letterbox's,
  whose rounding is Ultralytics'); `to_input` scales a batch of them to the graph's input.
- `decode`: one image's raw outputs -> `Detections` in model-input pixels: boxes, scores,
  class ids (+ masks over their boxes for segment, keypoints for pose), after the score
  floor and class-wise NMS where the layout needs it.

tests/tools/test_ultralytics_layouts.py checks all of it against Ultralytics' predictor on
the same ONNX files.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import cv2
import numpy as np

from prelabel.core.models.ultralytics_layouts import UltralyticsLayout
from services.common.letterbox import Letterbox, letterbox_for

PAD_VALUE = 114  # LetterBox's grey
MAX_WH = 7680  # non_max_suppression's per-class box offset: all classes in one NMS pass
MAX_NMS = 30000  # candidates kept (by score) before NMS


@dataclass(frozen=True)
class FittedImage:
    pixels: np.ndarray  # [H, W, 3] uint8 RGB: the model input before scaling to 0..1
    geometry: Letterbox  # source <-> model-input pixels (services.common.letterbox maps boxes back)


@dataclass(frozen=True)
class BoxMask:
    """One instance's mask over the input pixels its box covers (x in [left, left + w), y in
    [top, top + h)): sigmoid of the prototypes x coefficients, upsampled bilinearly to the
    input; zero outside, as Ultralytics' crop. > 0.5 is Ultralytics' binary mask."""
    left: int
    top: int
    probabilities: np.ndarray  # [h, w] float32

    def paste(self, height: int, width: int) -> np.ndarray:
        """The mask over the whole [height, width] model input (zeros outside the box)."""
        full = np.zeros((height, width), np.float32)
        h, w = self.probabilities.shape
        full[self.top:self.top + h, self.left:self.left + w] = self.probabilities
        return full


@dataclass(frozen=True)
class Detections:
    """One image's detections, highest score first (end-to-end layouts: in the graph's row
    order, which is by score). Coordinates are model-input pixels, not clipped."""
    boxes: np.ndarray  # [N, 4] float32 x_min, y_min, x_max, y_max
    scores: np.ndarray  # [N] float32
    class_ids: np.ndarray  # [N] int32, index into the layout's names
    masks: tuple[BoxMask, ...] | None = None  # segment
    keypoints: np.ndarray | None = None  # pose: [N, K, 2] float32 x, y
    keypoint_scores: np.ndarray | None = None  # pose with kpt_shape (K, 3): [N, K] visibility in 0..1

    def __len__(self) -> int:
        return len(self.scores)


def fit_to_input(image_rgb: np.ndarray, layout: UltralyticsLayout) -> FittedImage:
    """[h, w, 3] uint8 RGB -> the model input Ultralytics' predictor would make of it
    (`LetterBox(auto=False)`: bilinear resize, centred, padded with 114; RT-DETR: stretched)."""
    src_h, src_w = image_rgb.shape[:2]
    dst_h, dst_w = layout.input_height, layout.input_width
    if layout.stretch:
        geometry = Letterbox(src_w, src_h, dst_w, dst_h, dst_w, dst_h, 0, 0)
    else:
        geometry = letterbox_for(src_w, src_h, dst_w, dst_h)
    resized = image_rgb
    if (src_w, src_h) != (geometry.new_w, geometry.new_h):
        resized = cv2.resize(image_rgb, (geometry.new_w, geometry.new_h), interpolation=cv2.INTER_LINEAR)
    pixels = np.full((dst_h, dst_w, 3), PAD_VALUE, np.uint8)
    pixels[geometry.pad_y:geometry.pad_y + geometry.new_h, geometry.pad_x:geometry.pad_x + geometry.new_w] = resized
    return FittedImage(pixels, geometry)


def to_input(pixels: np.ndarray, layout: UltralyticsLayout) -> np.ndarray:
    """[B, H, W, 3] uint8 RGB model inputs -> [B, 3, H, W] RGB/255 in the graph's float type."""
    x = np.ascontiguousarray(pixels.transpose(0, 3, 1, 2)).astype(np.float32) / np.float32(255)
    return x.astype(np.float16) if layout.input_dtype == "float16" else x


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (0.5 * (1.0 + np.tanh(0.5 * x))).astype(np.float32)  # no overflow for large |x|


def _empty(layout: UltralyticsLayout) -> Detections:
    kpt = layout.kpt_shape
    return Detections(
        np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32),
        masks=() if layout.task == "segment" else None,
        keypoints=np.zeros((0, kpt[0], 2), np.float32) if kpt else None,
        keypoint_scores=np.zeros((0, kpt[0]), np.float32) if kpt and kpt[1] == 3 else None)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Greedy NMS as torchvision.ops.nms: indices kept, highest score first; a box goes when
    its IoU with a kept one is > iou. Float32 throughout, like the reference."""
    boxes = boxes.astype(np.float32, copy=False)
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = (boxes[:, k] for k in range(4))
    areas = (x2 - x1) * (y2 - y1)
    kept: list[int] = []
    while order.size:
        i = order[0]
        kept.append(int(i))
        rest = order[1:]
        w = np.maximum(np.float32(0), np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        h = np.maximum(np.float32(0), np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = w * h
        order = rest[inter / (areas[i] + areas[rest] - inter) <= np.float32(iou)]
    return np.asarray(kept, np.int64)


@dataclass(frozen=True)
class _Rows:
    """Final rows of one image before the task's extras are read."""
    boxes: np.ndarray  # [N, 4] float32 xyxy, model-input pixels
    scores: np.ndarray
    class_ids: np.ndarray
    extras: np.ndarray  # [N, extra] mask coefficients or keypoints


def _yolo_rows(pred: np.ndarray, layout: UltralyticsLayout, score_floor: float, iou: float, max_det: int) -> _Rows:
    """[4 + nc + extra, anchors] -> rows after the floor and class-wise NMS
    (non_max_suppression with multi_label=False, agnostic=False)."""
    nc = layout.num_classes
    class_scores = pred[4:4 + nc]
    candidates = np.nonzero(class_scores.max(axis=0) > score_floor)[0]
    x = pred[:, candidates].T.astype(np.float32, copy=False)
    class_ids = x[:, 4:4 + nc].argmax(axis=1)
    scores = x[np.arange(len(x)), 4 + class_ids]
    if len(x) > MAX_NMS:
        top = np.argsort(-scores, kind="stable")[:MAX_NMS]
        x, class_ids, scores = x[top], class_ids[top], scores[top]
    half = x[:, 2:4] / np.float32(2)
    boxes = np.concatenate([x[:, 0:2] - half, x[:, 0:2] + half], axis=1)
    keep = nms(boxes + (class_ids[:, None] * MAX_WH).astype(np.float32), scores, iou)[:max_det]
    return _Rows(boxes[keep], scores[keep], class_ids[keep].astype(np.int32), x[keep, 4 + nc:])


def _final_rows(rows: np.ndarray, layout: UltralyticsLayout, score_floor: float, max_det: int) -> _Rows:
    """[K, 6 + extra] end-to-end or RT-DETR rows -> those over the floor, in row order."""
    rows = rows[np.nonzero(rows[:, 4] > score_floor)[0][:max_det]].astype(np.float32, copy=False)
    boxes = rows[:, :4]
    if layout.family == "rtdetr":  # cx, cy, w, h in 0..1 of the input
        half = boxes[:, 2:4] / np.float32(2)
        size = np.array([layout.input_width, layout.input_height] * 2, np.float32)
        boxes = np.concatenate([boxes[:, :2] - half, boxes[:, :2] + half], axis=1) * size
    return _Rows(boxes, rows[:, 4], rows[:, 5].astype(np.int32), rows[:, 6:])


def _bilinear(out_positions: np.ndarray, in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices (lo, hi) and weight of hi for output pixels `out_positions` when
    [in_size] is resized to [out_size] bilinearly, as torch's interpolate(align_corners=False)."""
    scale = np.float32(in_size / out_size)
    src = np.maximum((out_positions.astype(np.float32) + np.float32(0.5)) * scale - np.float32(0.5), np.float32(0))
    lo = src.astype(np.int64)
    hi = np.minimum(lo + 1, in_size - 1)
    return lo, hi, np.clip(src - lo, 0, 1).astype(np.float32)


def _weights(out_positions: np.ndarray, in_size: int, out_size: int) -> tuple[int, np.ndarray]:
    """(first source index, [len(out_positions), window] interpolation matrix)."""
    lo, hi, w_hi = _bilinear(out_positions, in_size, out_size)
    start = int(lo.min())
    matrix = np.zeros((len(out_positions), int(hi.max()) - start + 1), np.float32)
    rows = np.arange(len(out_positions))
    np.add.at(matrix, (rows, lo - start), 1 - w_hi)
    np.add.at(matrix, (rows, hi - start), w_hi)
    return start, matrix


def box_masks(protos: np.ndarray, coefficients: np.ndarray, boxes: np.ndarray,
              height: int, width: int) -> list[BoxMask | None]:
    """Ultralytics' process_mask(upsample=True) per instance, over its box only: the
    prototypes [M, mh, mw] x coefficients [N, M], upsampled bilinearly to the [height,
    width] input, kept where x_min <= x < x_max and y_min <= y < y_max. None for an
    instance whose mask is empty there (Ultralytics drops those detections)."""
    m, mh, mw = protos.shape
    # Every instance's logits at prototype resolution in one product, then each is resampled
    # over its box only.
    logits_all = (coefficients.astype(np.float32) @ protos.reshape(m, -1).astype(np.float32)).reshape(-1, mh, mw)
    out: list[BoxMask | None] = []
    for proto_logits, box in zip(logits_all, boxes, strict=True):
        x0, y0, x1, y1 = (int(np.clip(np.ceil(v), 0, lim)) for v, lim in zip(box, (width, height, width, height),
                                                                             strict=True))
        if x1 <= x0 or y1 <= y0:
            out.append(None)
            continue
        r0, wy = _weights(np.arange(y0, y1), mh, height)
        c0, wx = _weights(np.arange(x0, x1), mw, width)
        logits = wy @ proto_logits[r0:r0 + wy.shape[1], c0:c0 + wx.shape[1]] @ wx.T
        out.append(BoxMask(x0, y0, _sigmoid(logits)) if (logits > 0).any() else None)
    return out


def decode(layout: UltralyticsLayout, outputs: Mapping[str, np.ndarray], *, score_floor: float = 0.25,
           iou: float = 0.7, max_det: int = 300) -> Detections:
    """One image's raw outputs (each graph output with its batch axis removed, by name) ->
    detections in model-input pixels. `score_floor` (Ultralytics' conf, strict >) applies to
    every layout; `iou` only where the layout needs NMS (yolo). Defaults are Ultralytics'
    predict defaults."""
    pred = np.asarray(outputs[layout.output_name])
    if layout.family == "yolo":
        rows = _yolo_rows(pred, layout, score_floor, iou, max_det)
    else:
        rows = _final_rows(pred, layout, score_floor, max_det)
    if not len(rows.scores):
        return _empty(layout)
    if layout.task == "segment":
        assert layout.protos_name is not None
        masks = box_masks(np.asarray(outputs[layout.protos_name]), rows.extras, rows.boxes,
                          layout.input_height, layout.input_width)
        keep = np.array([m is not None for m in masks])
        return Detections(rows.boxes[keep], rows.scores[keep], rows.class_ids[keep],
                          masks=tuple(m for m in masks if m is not None))
    if layout.task == "pose":
        assert layout.kpt_shape is not None
        k, dims = layout.kpt_shape
        kpts = rows.extras.reshape(len(rows.scores), k, dims)
        return Detections(rows.boxes, rows.scores, rows.class_ids, keypoints=np.ascontiguousarray(kpts[..., :2]),
                          keypoint_scores=np.ascontiguousarray(kpts[..., 2]) if dims == 3 else None)
    return Detections(rows.boxes, rows.scores, rows.class_ids)
