"""Instance segmenter (torchvision Mask R-CNN family) for Triton's Python backend:
automatic instance masks and box-prompted masks from one set of weights.

Inputs  IMAGE         uint8 [B, S, S, 3]  letterboxed RGB
        PROMPT_BOXES  fp32  [B, P, 4]     model-input pixels
        PROMPT_LABELS int32 [B, P]        COCO id of each prompt, 0 = unknown
        PROMPT_COUNT  int32 [B, 1]        0 = automatic mode
Outputs BOXES  fp32 [B, N, 4]  model-input pixels (prompted: the prompt boxes)
        SCORES fp32 [B, N]     automatic: detection score; prompted: probability of
                               the answered category from the box classifier
        LABELS int32 [B, N]    COCO ids
        MASKS  fp32 [B, N, M, M]  mask-head probabilities (sigmoid) of each row's
                               category over its box, NOT pasted (M = 28); the service
                               pastes them in source coordinates
        COUNT  int32 [B, 1]    PROVENANCE (added by BatchedModel)

Prompted mask channel: the prompt's category when it is a model category (COCO id
1..90), otherwise the category the box classifier finds most probable on that box
(background excluded) -- the channel Mask R-CNN itself would use for that box.
"""
from __future__ import annotations

import torch

from services.modelkit.contract import BOXES, LABELS, MASKS, SCORES
from services.modelkit.rcnn import PromptableRcnn, split_rows


class Segmenter(PromptableRcnn):
    def check_heads(self) -> None:
        mask_size = self.output_dims(MASKS)[1:]
        # MaskRCNNPredictor doubles the RoI pool resolution (one 2x deconvolution).
        expected = [2 * int(side) for side in self.roi_heads.mask_roi_pool.output_size]
        if mask_size != expected:
            raise ValueError(f"{self.model_name}: MASKS dims {mask_size} but the mask head gives {expected}")

    def automatic_rows(self, det):
        return {
            BOXES.name: det["boxes"],
            SCORES.name: det["scores"],
            LABELS.name: det["labels"],
            MASKS.name: det["masks"][:, 0],
        }

    def prompted_rows(self, feats, boxes, labels, image_sizes):
        labels, scores = self.classify(feats, boxes, image_sizes, labels)
        rh = self.roi_heads
        x = rh.mask_predictor(rh.mask_head(rh.mask_roi_pool(feats, boxes, image_sizes)))
        masks = x[torch.arange(len(labels), device=x.device), labels].sigmoid()
        return [
            {BOXES.name: b, SCORES.name: s, LABELS.name: lab, MASKS.name: m}
            for b, s, lab, m in zip(boxes, split_rows(scores, boxes), split_rows(labels, boxes),
                                    split_rows(masks, boxes), strict=False)
        ]
