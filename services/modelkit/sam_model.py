"""A user's SAM-interface ONNX pair served by Triton's Python backend as two models
(`prelabel models add --family sam`, prelabel/core/models/user_models.py): SamEncoder
(the image_encoder head: one embedding per image) and SamDecoder (the mask_decoder head:
candidate masks per click on a kept embedding). Two models because the two run at
different rates: an image is encoded once, then clicked many times, so each has its own
queue and instances, and Triton counts each one's inferences (the tests prove a second
click skips the encoder by them).

Both run their file with onnxruntime, hashed at load against the config's `sha256` and
checked against SAM's interface (prelabel.core.models.sam_interface). The arithmetic is
services.modelkit.sam_onnx's, proven equal to Meta's SamPredictor:
- encoder: IMAGE is the picture resized so its long side is 1024 (`sam_onnx.placed_image`,
  done where the image is decoded), at the top-left; IMAGE_VALID its (height, width). The
  model normalises it (`sam_onnx.normalized`) and answers IMAGE_EMBEDDINGS.
- decoder: PROMPT_POINTS / PROMPT_POINT_SIGNS are the clicks and a box's corners in IMAGE
  pixels with SAM's labels (-1 rows are no click); PROMPT_MASKS the previous answer's
  logits where PROMPT_MASK_GIVEN is 1. The model feeds them as SamPredictor does (its
  padding point when there is no box) and answers all four of the decoder's low-resolution
  masks with their predicted IoUs; the caller chooses (`sam_onnx.chosen`) and makes the
  source-size masks (`sam_onnx.upscaled`), so the outputs' shapes never depend on the image.

A SAM 2 pair (`--family sam2`) is served the same way by Sam2Encoder (sam2_image_encoder:
IMAGE is the picture resized to 1024 x 1024, `sam2_onnx.placed_image`; it answers
IMAGE_EMBEDDINGS, HIGH_RES_FEATS_0 and HIGH_RES_FEATS_1) and Sam2Decoder (sam2_mask_decoder:
the three feature maps and the same prompt tensors; every prompt gets SAM 2's padding
point), with services.modelkit.sam2_onnx's arithmetic, proven equal to SAM2ImagePredictor.

The weights kind the user gave at add time (`weights`: pretrained, custom or random) is the
provenance's, so random weights are said in every answer.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from prelabel.core.models.onnx_graph import OnnxGraph, read_onnx_graph
from prelabel.core.models.sam_interface import SAM2, check_decoder, check_encoder
from prelabel.core.models.user_models import WEIGHTS_KINDS
from services.modelkit import sam2_onnx, sam_onnx
from services.modelkit.contract import (
    HIGH_RES_FEATS_0,
    HIGH_RES_FEATS_1,
    IMAGE,
    IMAGE_EMBEDDINGS,
    IMAGE_VALID,
    LOW_RES_MASKS,
    PREDICTED_IOUS,
    PROMPT_COUNT,
    PROMPT_MASK_GIVEN,
    PROMPT_MASKS,
    PROMPT_POINT_SIGNS,
    PROMPT_POINTS,
)
from services.modelkit.parameters import ModelParameters, require
from services.modelkit.triton_base import BatchedModel
from services.modelkit.ultralytics_model import open_onnx, verified_file
from services.modelkit.weights import WeightsInfo


@dataclass(frozen=True, kw_only=True)
class SamParameters(ModelParameters):
    onnx_file: str
    """The ONNX file of this part, relative to the model folder (or absolute)."""

    sha256: str
    """SHA-256 of that file (hex): a different file is refused at load."""

    pair: str
    """The pair's name (`models add` NAME): the models are NAME_encoder and NAME_decoder."""

    weights: str = "custom"
    """What the weights are (pretrained, custom, random), reported in every provenance."""

    license: str = ""
    """The weights' license as the user gave it (SPDX)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(len(self.sha256) == 64 and all(c in "0123456789abcdef" for c in self.sha256), "sha256",
                self.sha256, "must be 64 lowercase hex digits")
        require(self.weights in WEIGHTS_KINDS, "weights", self.weights, f"expected one of {list(WEIGHTS_KINDS)}")


class SamPart(BatchedModel[SamParameters]):
    """What both parts share: the verified, checked file in an onnxruntime session."""

    parameters_class = SamParameters
    part: ClassVar[str]

    def check(self, graph: OnnxGraph) -> None:
        """SAM's interface of this part (SamInterfaceError otherwise)."""
        raise NotImplementedError

    def initialize(self, args: dict) -> None:
        # Triton's Python backend passes the model folder as `model_repository`.
        self.model_dir = Path(args.get("model_repository", "."))
        super().initialize(args)

    def load(self, params: SamParameters, settings, device) -> WeightsInfo:
        path = Path(params.onnx_file)
        path = verified_file(path if path.is_absolute() else self.model_dir / path, params.sha256)
        self.check(read_onnx_graph(path))
        self.session = open_onnx(path, params.num_threads, device.index or 0 if device.type == "cuda" else None)
        return WeightsInfo(kind=params.weights, source=f"user model {params.pair}: {self.part} "
                                                       f"(sha256 {params.sha256[:12]})",
                           architecture=f"SAM-interface ONNX {self.part}", sha256=params.sha256,
                           license=params.license)


class SamEncoder(SamPart):
    part = "encoder"

    def check(self, graph: OnnxGraph) -> None:
        check_encoder(graph)

    def infer(self, inputs):
        embeddings = []
        for placed, (height, width) in zip(inputs[IMAGE.name], inputs[IMAGE_VALID.name], strict=True):
            height, width = (int(np.clip(v, 0, sam_onnx.LONG_SIDE)) for v in (height, width))
            x = sam_onnx.normalized(placed, height, width)
            embeddings.append(self.session.run(["image_embeddings"], {"image": x})[0][0])
        return {IMAGE_EMBEDDINGS.name: np.stack(embeddings).astype(np.float32)}


class SamDecoder(SamPart):
    part = "decoder"

    def check(self, graph: OnnxGraph) -> None:
        check_decoder(graph)

    def feed(self, inputs, b: int, points: sam_onnx.SamPoints, previous: np.ndarray | None) -> dict[str, np.ndarray]:
        """The decoder file's inputs for batch item `b`'s prompt."""
        # orig_im_size sizes only the export's `masks`, which is not read: the smallest.
        return sam_onnx.onnx_inputs(points, inputs[IMAGE_EMBEDDINGS.name][b][None], previous,
                                    (sam_onnx.LOW_RES, sam_onnx.LOW_RES))

    def infer(self, inputs):
        batch, rows = inputs[PROMPT_POINT_SIGNS.name].shape[:2]
        low_res = np.zeros((batch, rows, 4, sam_onnx.LOW_RES, sam_onnx.LOW_RES), np.float32)
        ious = np.zeros((batch, rows, 4), np.float32)
        for b in range(batch):
            count = min(rows, int(inputs[PROMPT_COUNT.name][b].reshape(-1)[0]))
            for p in range(count):
                signs = inputs[PROMPT_POINT_SIGNS.name][b, p]
                given = signs != -1
                points = sam_onnx.SamPoints(inputs[PROMPT_POINTS.name][b, p][given].astype(np.float32),
                                            signs[given].astype(np.float32))
                previous = inputs[PROMPT_MASKS.name][b, p] if inputs[PROMPT_MASK_GIVEN.name][b, p] else None
                iou, masks = self.session.run(["iou_predictions", "low_res_masks"],
                                              self.feed(inputs, b, points, previous))
                ious[b, p], low_res[b, p] = iou[0], masks[0]
        return {LOW_RES_MASKS.name: low_res, PREDICTED_IOUS.name: ious}


class Sam2Encoder(SamPart):
    part = "encoder"

    def check(self, graph: OnnxGraph) -> None:
        check_encoder(graph, SAM2)

    def infer(self, inputs):
        outputs: tuple[list[np.ndarray], ...] = ([], [], [])
        for placed in inputs[IMAGE.name]:
            answer = self.session.run(["image_embed", "high_res_feats_0", "high_res_feats_1"],
                                      {"image": sam2_onnx.normalized(placed)})
            for out, value in zip(outputs, answer, strict=True):
                out.append(value[0])
        return {spec.name: np.stack(out).astype(np.float32)
                for spec, out in zip((IMAGE_EMBEDDINGS, HIGH_RES_FEATS_0, HIGH_RES_FEATS_1), outputs, strict=True)}


class Sam2Decoder(SamDecoder):
    def check(self, graph: OnnxGraph) -> None:
        check_decoder(graph, SAM2)

    def feed(self, inputs, b: int, points: sam_onnx.SamPoints, previous: np.ndarray | None) -> dict[str, np.ndarray]:
        features = sam2_onnx.Sam2Features(*(inputs[t.name][b][None]
                                            for t in (IMAGE_EMBEDDINGS, HIGH_RES_FEATS_0, HIGH_RES_FEATS_1)))
        return sam2_onnx.onnx_inputs(points, features, previous)
