"""COCO person keypoints (torchvision Keypoint R-CNN family) for Triton's Python
backend: automatic (every person found) and box-prompted, from one set of weights.

Inputs  IMAGE         uint8 [B, S, S, 3]  letterboxed RGB
        PROMPT_BOXES  fp32  [B, P, 4]     person boxes, model-input pixels
        PROMPT_COUNT  int32 [B, 1]        0 = automatic mode
Outputs BOXES  fp32 [B, N, 4]   model-input pixels (prompted: the prompt boxes)
        SCORES fp32 [B, N]      automatic: detection score; prompted: the box
                                classifier's person probability for the prompt box
        LABELS int32 [B, N]     always 1 (person)
        KEYPOINTS       fp32 [B, N, 17, 2]  (x, y) in model-input pixels, COCO order
        KEYPOINT_SCORES fp32 [B, N, 17]     sigmoid of the heatmap logit at the peak
        COUNT  int32 [B, 1]     PROVENANCE (added by BatchedModel)

Keypoint scores: torchvision reports the raw heatmap logit at each keypoint's peak
(the head is trained with a spatial softmax, so the logit is unbounded; Detectron's
visualiser draws points whose logit exceeds 2). We send sigmoid(logit), a monotone
map into [0, 1]: 0.5 is logit 0, 0.88 is Detectron's drawing threshold of 2.
"""
from __future__ import annotations

import torch
from torchvision.models.detection.roi_heads import keypointrcnn_inference

from services.modelkit.contract import BOXES, KEYPOINT_SCORES, KEYPOINTS, LABELS, SCORES
from services.modelkit.rcnn import PromptableRcnn, split_rows


class Keypointer(PromptableRcnn):
    def check_heads(self) -> None:
        wanted = self.output_dims(KEYPOINTS)[1]
        have = self.roi_heads.keypoint_predictor.kps_score_lowres.out_channels
        if wanted != have:
            raise ValueError(f"{self.model_name}: KEYPOINTS has {wanted} points, the head {have}")

    def automatic_rows(self, det):
        return {
            BOXES.name: det["boxes"],
            SCORES.name: det["scores"],
            LABELS.name: det["labels"],
            KEYPOINTS.name: det["keypoints"][..., :2],
            KEYPOINT_SCORES.name: det["keypoints_scores"].sigmoid(),
        }

    def prompted_rows(self, feats, boxes, labels, image_sizes):
        person = [torch.ones_like(lab) for lab in labels]
        labels, scores = self.classify(feats, boxes, image_sizes, person)
        rh = self.roi_heads
        x = rh.keypoint_predictor(rh.keypoint_head(rh.keypoint_roi_pool(feats, boxes, image_sizes)))
        keypoints, keypoint_scores = keypointrcnn_inference(x, boxes)
        return [
            {BOXES.name: b, SCORES.name: s, LABELS.name: lab, KEYPOINTS.name: kp[..., :2],
             KEYPOINT_SCORES.name: ks.sigmoid()}
            for b, s, lab, kp, ks in zip(boxes, split_rows(scores, boxes), split_rows(labels, boxes),
                                         keypoints, keypoint_scores, strict=False)
        ]
