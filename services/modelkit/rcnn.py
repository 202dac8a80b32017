"""Mask R-CNN / Keypoint R-CNN models that answer two kinds of request in one batch.

Every batch item carries an image and up to P prompt boxes (`PROMPT_COUNT` of them
valid, in model-input pixels):

- automatic (PROMPT_COUNT = 0): the model's own detections -- RPN, box head, NMS,
  then the mask / keypoint head on the kept boxes (torchvision's eval path);
- prompted (PROMPT_COUNT = k > 0): exactly k rows, one per prompt box, in order. The
  backbone runs once for the whole batch; the prompt boxes go straight through the
  box classifier (`box_roi_pool` -> `box_head` -> `box_predictor`, for a category and
  a score) and the mask or keypoint head (`*_roi_pool` -> `*_head` -> `*_predictor`),
  so a prompted box is refined by exactly the same weights as a detected one.

Architectures (the `architecture` parameter of the model config):

- torchvision builders by name, e.g. `maskrcnn_resnet50_fpn_v2`,
  `keypointrcnn_resnet50_fpn` (GPU profile): real COCO weights are found by their
  published file name (PRELABEL_WEIGHTS_DIR or the torch hub cache);
- `maskrcnn_mobilenet_v3_large_320_fpn_lite`, `keypointrcnn_mobilenet_v3_large_320_fpn_lite`
  (no shipped config uses them; the unit tests run this model body with them on two
  cores): torchvision's `MaskRCNN` / `KeypointRCNN` classes on the MobileNetV3-Large
  FPN backbone of `fasterrcnn_mobilenet_v3_large_320_fpn` (same anchors and low-resolution
  RPN settings) with light heads (4 x 128-channel convs instead of 4 x 256 for masks and
  8 x 512 for keypoints). No published weights exist for these combinations: they serve
  `<model>.pt` from PRELABEL_WEIGHTS_DIR (custom) or, when allowed, random weights.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch
from torch.nn import functional as F
from torchvision.models.detection import KeypointRCNN, MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import mobilenet_backbone
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.keypoint_rcnn import KeypointRCNNHeads, KeypointRCNNPredictor
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.ops.misc import FrozenBatchNorm2d

from services.modelkit.contract import (
    COUNT,
    IMAGE,
    PROMPT_BOXES,
    PROMPT_COUNT,
    PROMPT_LABELS,
    SCORES,
)
from services.modelkit.settings import ModelSettings
from services.modelkit.torchvision_models import TorchvisionParameters, build_detector, to_float_images
from services.modelkit.triton_base import BatchedModel, pad_rows
from services.modelkit.weights import WeightsInfo

COCO_NUM_CLASSES = 91  # background + the original 1..90 COCO ids
PERSON_NUM_CLASSES = 2  # background, person
COCO_NUM_KEYPOINTS = 17
LITE_HEAD_CHANNELS = 128

# Low-resolution RPN settings of torchvision's fasterrcnn_mobilenet_v3_large_320_fpn.
_MOBILENET_320_RPN = dict(rpn_pre_nms_top_n_test=150, rpn_post_nms_top_n_test=150, rpn_score_thresh=0.05)


def _mobilenet_fpn():
    backbone = mobilenet_backbone(
        backbone_name="mobilenet_v3_large", weights=None, fpn=True, trainable_layers=0,
        norm_layer=FrozenBatchNorm2d,
    )
    anchors = AnchorGenerator(((32, 64, 128, 256, 512),) * 3, ((0.5, 1.0, 2.0),) * 3)
    return backbone, anchors


def _maskrcnn_mobilenet_lite(**kwargs) -> MaskRCNN:
    backbone, anchors = _mobilenet_fpn()
    channels = LITE_HEAD_CHANNELS
    return MaskRCNN(
        backbone, None, rpn_anchor_generator=anchors,
        box_predictor=FastRCNNPredictor(1024, COCO_NUM_CLASSES),
        mask_head=MaskRCNNHeads(backbone.out_channels, (channels,) * 4, 1),
        mask_predictor=MaskRCNNPredictor(channels, channels, COCO_NUM_CLASSES),
        **_MOBILENET_320_RPN, **kwargs,
    )


def _keypointrcnn_mobilenet_lite(**kwargs) -> KeypointRCNN:
    backbone, anchors = _mobilenet_fpn()
    channels = LITE_HEAD_CHANNELS
    return KeypointRCNN(
        backbone, PERSON_NUM_CLASSES, rpn_anchor_generator=anchors,
        keypoint_head=KeypointRCNNHeads(backbone.out_channels, (channels,) * 4),
        keypoint_predictor=KeypointRCNNPredictor(channels, COCO_NUM_KEYPOINTS),
        **_MOBILENET_320_RPN, **kwargs,
    )


#: Architectures defined here (no published weights); anything else is a torchvision builder.
LITE_ARCHITECTURES: dict[str, Callable[..., torch.nn.Module]] = {
    "maskrcnn_mobilenet_v3_large_320_fpn_lite": _maskrcnn_mobilenet_lite,
    "keypointrcnn_mobilenet_v3_large_320_fpn_lite": _keypointrcnn_mobilenet_lite,
}


def build_rcnn(
    *,
    model_name: str,
    architecture: str,
    input_size: int,
    max_detections: int,
    box_score_thresh: float,
    settings: ModelSettings,
    device: torch.device,
) -> tuple[GeneralizedRCNN, WeightsInfo]:
    """Build a Mask/Keypoint R-CNN (torchvision or one of LITE_ARCHITECTURES) with the
    same weights rules as every model: real weights when found, random only when
    allowed (and then said loudly)."""
    model, info = build_detector(
        model_name=model_name, architecture=architecture, input_size=input_size,
        max_detections=max_detections, settings=settings, device=device,
        custom_builders=LITE_ARCHITECTURES, box_score_thresh=box_score_thresh,
    )
    # Every architecture here is a MaskRCNN / KeypointRCNN, both GeneralizedRCNN.
    return cast(GeneralizedRCNN, model), info


def _subset(features: dict[str, torch.Tensor], images: ImageList, index: list[int]):
    if len(index) == len(images.image_sizes):
        return features, images
    idx = torch.as_tensor(index, device=images.tensors.device)
    return ({k: v.index_select(0, idx) for k, v in features.items()},
            ImageList(images.tensors.index_select(0, idx), [images.image_sizes[i] for i in index]))


@dataclass(frozen=True, kw_only=True)
class RcnnParameters(TorchvisionParameters):
    box_score_floor: float = 0.05
    """Automatic mode: candidates the model keeps (its box_score_thresh) before the
    caller's score_threshold applies."""


class PromptableRcnn(BatchedModel[RcnnParameters]):
    """Shared Triton model body.

    Inputs  IMAGE         uint8 [B, S, S, 3]  letterboxed RGB (normalised inside)
            PROMPT_BOXES  fp32  [B, P, 4]     x_min, y_min, x_max, y_max, model-input pixels
            PROMPT_COUNT  int32 [B, 1]        valid prompt rows; 0 = automatic mode
    Outputs BOXES fp32 [B, N, 4] (model-input pixels)  SCORES fp32 [B, N]
            LABELS int32 [B, N]  COUNT int32 [B, 1]  + the subclass's head outputs,
            all padded to N rows (N >= P). Prompted items answer row k for prompt k.
    """

    parameters_class = RcnnParameters
    model: GeneralizedRCNN

    @property
    def roi_heads(self) -> RoIHeads:
        """The model's RoI heads (GeneralizedRCNN declares the attribute a plain Module)."""
        return cast(RoIHeads, self.model.roi_heads)

    def load(self, params: RcnnParameters, settings, device):
        height, width, _ = self.input_dims(IMAGE)
        if height != width:
            raise ValueError(f"{self.model_name}: IMAGE must be square, got {height}x{width}")
        self.input_size = height
        self.max_instances = self.output_dims(SCORES)[0]
        self.max_prompts = self.input_dims(PROMPT_BOXES)[0]
        if self.max_prompts > self.max_instances:
            raise ValueError(f"{self.model_name}: {self.max_prompts} prompts do not fit "
                             f"{self.max_instances} output rows")
        self.model, info = build_rcnn(
            model_name=self.model_name,
            architecture=params.architecture,
            input_size=self.input_size,
            max_detections=self.max_instances,
            box_score_thresh=params.box_score_floor,
            settings=settings,
            device=device,
        )
        self.check_heads()
        return info

    def check_heads(self) -> None:
        """Fail at load time when the config's output shapes do not fit the model."""

    # -- batch ----------------------------------------------------------------
    def infer(self, inputs):
        images = to_float_images(inputs[IMAGE.name], self.device)
        image_list, _ = self.model.transform(images)
        features = self.model.backbone(image_list.tensors)
        counts = np.clip(inputs[PROMPT_COUNT.name].reshape(len(images), -1)[:, 0], 0, self.max_prompts)
        auto = [i for i, c in enumerate(counts) if c == 0]
        prompted = [i for i, c in enumerate(counts) if c > 0]
        rows: dict[int, dict[str, torch.Tensor]] = {}  # batch index -> outputs; every index is auto or prompted
        if auto:
            feats, sub = _subset(features, image_list, auto)
            proposals, _ = self.model.rpn(sub, feats)
            detections, _ = self.model.roi_heads(feats, proposals, sub.image_sizes)
            for i, det in zip(auto, detections, strict=False):
                rows[i] = self.automatic_rows(det)
        if prompted:
            feats, sub = _subset(features, image_list, prompted)
            boxes = [self._prompt_boxes(inputs[PROMPT_BOXES.name][i, : counts[i]]) for i in prompted]
            labels = [self._prompt_labels(inputs, i, counts[i]) for i in prompted]
            for i, row in zip(prompted, self.prompted_rows(feats, boxes, labels, sub.image_sizes), strict=False):
                rows[i] = row
        return self.pack([rows[i] for i in range(len(images))])

    def _prompt_boxes(self, boxes: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(boxes, dtype=np.float32)).to(self.device)
        t = t.clamp(0, self.input_size)
        # Ordered corners even for a malformed request (the services validate first).
        return torch.stack([t[:, 0], t[:, 1], torch.maximum(t[:, 0], t[:, 2]),
                            torch.maximum(t[:, 1], t[:, 3])], dim=1)

    def _prompt_labels(self, inputs, i: int, count: int) -> torch.Tensor:
        if PROMPT_LABELS.name not in inputs:
            return torch.zeros(count, dtype=torch.int64, device=self.device)
        return torch.from_numpy(inputs[PROMPT_LABELS.name][i, :count].astype(np.int64)).to(self.device)

    def classify(self, feats, boxes, image_sizes, given: list[torch.Tensor]):
        """Box classifier on the prompt boxes: the category to answer with (the caller's
        when it is one of the model's, else the most probable non-background class) and
        that category's probability."""
        rh = self.roi_heads
        x = rh.box_head(rh.box_roi_pool(feats, boxes, image_sizes))
        logits, _ = rh.box_predictor(x)
        probs = F.softmax(logits, dim=-1)
        given_all = torch.cat(given)
        valid = (given_all > 0) & (given_all < probs.shape[1])
        best = probs[:, 1:].argmax(dim=1) + 1
        labels = torch.where(valid, given_all, best)
        scores = probs[torch.arange(len(labels), device=probs.device), labels]
        return labels, scores

    # -- subclass hooks ---------------------------------------------------------
    def automatic_rows(self, det: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def prompted_rows(self, feats, boxes, labels, image_sizes) -> list[dict[str, torch.Tensor]]:
        raise NotImplementedError

    def pack(self, rows: list[dict[str, torch.Tensor]]) -> dict[str, np.ndarray]:
        n = self.max_instances
        names = list(rows[0])
        dtypes = {t.name: t.numpy_dtype for t in self.head.outputs}
        out: dict[str, list[np.ndarray]] = {name: [] for name in names}
        counts = []
        for row in rows:
            for name in names:
                value = row[name].detach().cpu().numpy()
                out[name].append(pad_rows(value.astype(dtypes[name]), n))
            counts.append([min(n, len(row[SCORES.name]))])
        arrays = {name: np.stack(values) for name, values in out.items()}
        arrays[COUNT.name] = np.asarray(counts, dtype=np.int32)
        return arrays


def split_rows(values: torch.Tensor, boxes: list[torch.Tensor]) -> list[torch.Tensor]:
    return list(values.split([len(b) for b in boxes]))
