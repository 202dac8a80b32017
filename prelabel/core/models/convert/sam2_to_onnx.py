"""Export a SAM 2.1 image model to an ONNX encoder + decoder pair with Meta's own code
(sam2 1.1.0), in the interface community SAM 2 exports (X-AnyLabeling, samexporter) use:

    python sam2_to_onnx.py CHECKPOINT CONFIG OUT_DIR   -> OUT_DIR/{encoder,decoder}.onnx

Runs where sam2 is installed (torch from the environment). CONFIG is one of sam2's
config names (configs/sam2.1/sam2.1_hiera_t.yaml, ...) or `tiny`: SAM 2.1's prompt
encoder and mask decoder at their published sizes behind a five-block, 16-wide Hiera
(TINY_OVERRIDES), for tests with random weights (loaded from a state dict).

- encoder: `image` [1, 3, 1024, 1024] (the picture resized to 1024 x 1024, normalised) ->
  `image_embed` [1, 256, 64, 64], `high_res_feats_0` [1, 32, 256, 256],
  `high_res_feats_1` [1, 64, 128, 128]: what SAM2ImagePredictor.set_image keeps (the
  backbone, the decoder's conv_s0/conv_s1 projections, no_mem_embed added), opset 17;
- decoder: the three features, `point_coords` [1, K, 2] (encoder pixels), `point_labels`
  [1, K] (1, 0, 2/3 a box's corners, -1 padding), `mask_input` [1, 1, 256, 256],
  `has_mask_input` [1] -> `low_res_masks` [1, 4, 256, 256] and `iou_predictions` [1, 4]:
  the prompt encoder and the mask decoder's predict_masks, all four masks out (the caller
  chooses as SAM2ImagePredictor does: services.modelkit.sam2_onnx), K dynamic, opset 17.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
from sam2.build_sam import build_sam2
from sam2.modeling.sam2_base import SAM2Base

OPSET = 17
TINY_CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"
#: Hiera with one block per stage but a global-attention block in the third (the code
#: refuses one at a stage's first, pooling block), 16 wide; one memory-attention layer
#: (unused by the image predictor). The prompt encoder and mask decoder keep their sizes.
TINY_OVERRIDES = ["++model.image_encoder.trunk.embed_dim=16", "++model.image_encoder.trunk.stages=[1,1,2,1]",
                  "++model.image_encoder.trunk.global_att_blocks=[3]",
                  "++model.image_encoder.neck.backbone_channel_list=[128,64,32,16]",
                  "++model.memory_attention.num_layers=1"]
FEATURE_SIZES = ((256, 256), (128, 128), (64, 64))  # high_res_feats_0, high_res_feats_1, image_embed


def tiny_sam2() -> SAM2Base:
    """SAM 2.1's decoder side at its published sizes behind a tiny Hiera (random weights)."""
    return build_sam2(TINY_CONFIG, None, device="cpu", hydra_overrides_extra=TINY_OVERRIDES)


def build(checkpoint: Path, config: str) -> SAM2Base:
    if config == "tiny":
        model = tiny_sam2()
        model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
        return model.eval()
    return build_sam2(config, str(checkpoint), device="cpu")


class Sam2Encoder(torch.nn.Module):
    """SAM2ImagePredictor.set_image's features from the normalised image."""

    def __init__(self, model: SAM2Base):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        _, feats, _, _ = self.model._prepare_backbone_features(self.model.forward_image(image))
        feats[-1] = feats[-1] + self.model.no_mem_embed
        high_0, high_1, embed = (f.permute(1, 2, 0).reshape(1, -1, *size) for f, size in zip(feats, FEATURE_SIZES,
                                                                                             strict=True))
        return embed, high_0, high_1


class Sam2Decoder(torch.nn.Module):
    """The prompt encoder and mask decoder as SAM2ImagePredictor._predict runs them, all four
    masks out; the mask prompt chosen by has_mask_input (no_mask_embed without one)."""

    def __init__(self, model: SAM2Base):
        super().__init__()
        self.model = model

    def forward(self, image_embed, high_res_feats_0, high_res_feats_1, point_coords, point_labels, mask_input,
                has_mask_input):
        prompts = self.model.sam_prompt_encoder
        sparse = prompts._embed_points(point_coords, point_labels, pad=False)  # the caller pads
        dense = (has_mask_input * prompts.mask_downscaling(mask_input)
                 + (1 - has_mask_input) * prompts.no_mask_embed.weight.reshape(1, -1, 1, 1))
        masks, iou_predictions, _, _ = self.model.sam_mask_decoder.predict_masks(
            image_embeddings=image_embed, image_pe=prompts.get_dense_pe(), sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense, repeat_image=False, high_res_features=[high_res_feats_0, high_res_feats_1])
        return masks, iou_predictions


def export_encoder(model: SAM2Base, path: Path) -> None:
    # eval() on the wrapper: torch.onnx.export restores the wrapper's training flag on
    # every submodule afterwards, which would switch the decoder's stability fallback off.
    torch.onnx.export(Sam2Encoder(model).eval(), (torch.zeros(1, 3, 1024, 1024),), str(path),
                      input_names=["image"], output_names=["image_embed", "high_res_feats_0", "high_res_feats_1"],
                      opset_version=OPSET, do_constant_folding=True, dynamo=False)


def export_decoder(model: SAM2Base, path: Path) -> None:
    inputs = {
        "image_embed": torch.zeros(1, 256, 64, 64),
        "high_res_feats_0": torch.zeros(1, 32, 256, 256),
        "high_res_feats_1": torch.zeros(1, 64, 128, 128),
        "point_coords": torch.full((1, 5, 2), 512.0),
        "point_labels": torch.tensor([[1.0, 0.0, 2.0, 3.0, -1.0]]),
        "mask_input": torch.zeros(1, 1, 256, 256),
        "has_mask_input": torch.tensor([1.0]),
    }
    torch.onnx.export(Sam2Decoder(model).eval(), tuple(inputs.values()), str(path), input_names=list(inputs),
                      output_names=["low_res_masks", "iou_predictions"], opset_version=OPSET,
                      do_constant_folding=True, dynamo=False,
                      dynamic_axes={"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}})


def main(argv: list[str]) -> int:
    checkpoint, config, out = Path(argv[0]), argv[1], Path(argv[2])
    out.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        model = build(checkpoint, config)
        export_encoder(model, out / "encoder.onnx")
        export_decoder(model, out / "decoder.onnx")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
