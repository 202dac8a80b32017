"""COCO box detector (torchvision Faster R-CNN family) for Triton's Python backend.

Input  IMAGE  uint8 [B, S, S, 3]  letterboxed RGB, S from the config.
Output BOXES  fp32  [B, N, 4]  x_min, y_min, x_max, y_max in model-input pixels
       SCORES fp32  [B, N]     LABELS int32 [B, N] (COCO ids)   COUNT int32 [B, 1]
"""
from __future__ import annotations

import numpy as np

from services.modelkit.contract import BOXES, COUNT, IMAGE, LABELS, SCORES
from services.modelkit.torchvision_models import TorchvisionParameters, build_detector, to_float_images
from services.modelkit.triton_base import BatchedModel, pad_rows


class CocoDetector(BatchedModel[TorchvisionParameters]):
    """`detector` head."""

    parameters_class = TorchvisionParameters

    def load(self, params: TorchvisionParameters, settings, device):
        input_size = self.input_dims(IMAGE)[0]
        self.max_detections = self.output_dims(SCORES)[0]
        self.model, info = build_detector(
            model_name=self.model_name,
            architecture=params.architecture,
            input_size=input_size,
            max_detections=self.max_detections,
            settings=settings,
            device=device,
            box_score_thresh=params.box_score_floor,
        )
        return info

    def infer(self, inputs):
        detections = self.model(to_float_images(inputs[IMAGE.name], self.device))
        n = self.max_detections
        boxes, scores, labels, counts = [], [], [], []
        for det in detections:
            boxes.append(pad_rows(det["boxes"].cpu().numpy().astype(np.float32), n))
            scores.append(pad_rows(det["scores"].cpu().numpy().astype(np.float32), n))
            labels.append(pad_rows(det["labels"].cpu().numpy().astype(np.int32), n))
            counts.append([min(n, len(det["scores"]))])
        return {
            BOXES.name: np.stack(boxes),
            SCORES.name: np.stack(scores),
            LABELS.name: np.stack(labels),
            COUNT.name: np.asarray(counts, dtype=np.int32),
        }
