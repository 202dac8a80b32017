"""What differs between SAM and SAM 2 on the click path, in one object per family, chosen
once from the pair's encoder head (Triton's config): how the image is placed for the
encoder, which encoder outputs are held per image, where the prompt points go, which of
the decoder's four masks are the candidates, how they are upscaled, and what is handed
back as low_res_mask. The arithmetic itself lives in services.modelkit.sam_onnx and
sam2_onnx, each proven equal to Meta's predictor."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from services.modelkit import sam2_onnx, sam_onnx
from services.modelkit.contract import (
    HIGH_RES_FEATS_0,
    HIGH_RES_FEATS_1,
    IMAGE,
    IMAGE_EMBEDDINGS,
    IMAGE_VALID,
    SAM2_IMAGE_ENCODER_HEAD,
    TensorSpec,
)


def _sam_encoder_inputs(rgb: np.ndarray) -> dict[str, np.ndarray]:
    source = (rgb.shape[0], rgb.shape[1])
    return {IMAGE.name: sam_onnx.placed_image(rgb, source)[None],
            IMAGE_VALID.name: np.array([sam_onnx.resized_size(*source)], np.int32)}


def _sam2_encoder_inputs(rgb: np.ndarray) -> dict[str, np.ndarray]:
    return {IMAGE.name: sam2_onnx.placed_image(rgb)[None]}


@dataclass(frozen=True)
class SamFamily:
    name: str
    #: A decoded RGB image (uint8 [h, w, 3]) -> the encoder's inputs.
    encoder_inputs: Callable[[np.ndarray], dict[str, np.ndarray]]
    #: Encoder outputs held per image and sent with every decoder call.
    features: tuple[TensorSpec, ...]
    #: (clicks, labels, box, previous), source height, width -> the decoder's points.
    prompt_points: Callable[[sam_onnx.SamPrompt, int, int], sam_onnx.SamPoints]
    #: (low_res [4, 256, 256], ious [4], multimask) -> the candidate masks' indices.
    chosen: Callable[[np.ndarray, np.ndarray, bool], slice | list[int]]
    #: (low_res [k, 256, 256], height, width) -> logits at the source size.
    upscaled: Callable[[np.ndarray, int, int], np.ndarray]
    #: Clamp of the logits handed back as low_res_mask (None: as the decoder gave them).
    logit_clamp: float | None

    def handed_back(self, low_res: np.ndarray) -> np.ndarray:
        if self.logit_clamp is None:
            return low_res
        return np.clip(low_res, -self.logit_clamp, self.logit_clamp)


SAM = SamFamily("sam", _sam_encoder_inputs, (IMAGE_EMBEDDINGS,), sam_onnx.prompt_points,
                lambda low_res, ious, multimask: sam_onnx.chosen(multimask), sam_onnx.upscaled, None)
SAM2 = SamFamily("sam2", _sam2_encoder_inputs, (IMAGE_EMBEDDINGS, HIGH_RES_FEATS_0, HIGH_RES_FEATS_1),
                 sam2_onnx.prompt_points, sam2_onnx.chosen, sam2_onnx.upscaled, sam2_onnx.LOGIT_CLAMP)


def family_of(encoder_head: str) -> SamFamily:
    """The family whose encoder implements `encoder_head` (a contract head's name)."""
    return SAM2 if encoder_head == SAM2_IMAGE_ENCODER_HEAD.name else SAM
