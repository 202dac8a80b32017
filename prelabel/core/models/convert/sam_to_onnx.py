"""Export a Segment Anything checkpoint to SAM's ONNX pair with Meta's own code
(segment_anything 1.0), as `prelabel models add --family sam` takes it
(prelabel/core/models/sam_interface.py):

    python sam_to_onnx.py CHECKPOINT ARCHITECTURE OUT_DIR   -> OUT_DIR/{encoder,decoder}.onnx

Runs inside the SAM export virtualenv (prelabel.export_venv; torch from the environment
that pulls). ARCHITECTURE is a key of segment_anything's sam_model_registry (vit_b, vit_l,
vit_h) or `tiny`: SAM's prompt encoder and mask decoder at their published sizes behind a
one-block ViT encoder, for tests with random weights (loaded from a state dict).

- encoder: `image` [1, 3, 1024, 1024] (normalised, zero-padded) -> `image_embeddings`
  [1, 256, 64, 64]: the model's image_encoder, traced at opset 17;
- decoder: Meta's SamOnnxModel with return_single_mask=False (all four masks out; the
  server chooses as SamPredictor does), the number of points dynamic, opset 17.
"""
from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

import torch
from segment_anything import sam_model_registry
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer
from segment_anything.utils.onnx import SamOnnxModel

OPSET = 17


def tiny_sam() -> Sam:
    """SAM's decoder side at its published sizes behind a one-block, 64-wide ViT encoder."""
    encoder = ImageEncoderViT(depth=1, embed_dim=64, img_size=1024, mlp_ratio=4,
                              norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=2, patch_size=16,
                              qkv_bias=True, use_rel_pos=True, global_attn_indexes=(0,), window_size=14,
                              out_chans=256)
    return Sam(image_encoder=encoder,
               prompt_encoder=PromptEncoder(embed_dim=256, image_embedding_size=(64, 64),
                                            input_image_size=(1024, 1024), mask_in_chans=16),
               mask_decoder=MaskDecoder(num_multimask_outputs=3,
                                        transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048,
                                                                      num_heads=8),
                                        transformer_dim=256, iou_head_depth=3, iou_head_hidden_dim=256),
               pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375])


def build(checkpoint: Path, architecture: str) -> Sam:
    if architecture == "tiny":
        sam = tiny_sam()
        sam.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
    elif architecture in sam_model_registry:
        sam = sam_model_registry[architecture](checkpoint=str(checkpoint))
    else:
        raise SystemExit(f"unknown SAM architecture {architecture!r}: {sorted(sam_model_registry)} or tiny")
    return sam.eval()


def export_encoder(sam: Sam, path: Path) -> None:
    torch.onnx.export(sam.image_encoder, (torch.zeros(1, 3, 1024, 1024),), str(path), input_names=["image"],
                      output_names=["image_embeddings"], opset_version=OPSET, do_constant_folding=True, dynamo=False)


def export_decoder(sam: Sam, path: Path) -> None:
    inputs = {
        "image_embeddings": torch.zeros(1, 256, 64, 64),
        "point_coords": torch.full((1, 5, 2), 512.0),
        "point_labels": torch.tensor([[1.0, 0.0, 2.0, 3.0, -1.0]]),
        "mask_input": torch.zeros(1, 1, 256, 256),
        "has_mask_input": torch.tensor([1.0]),
        "orig_im_size": torch.tensor([1500.0, 2250.0]),
    }
    torch.onnx.export(SamOnnxModel(sam, return_single_mask=False), tuple(inputs.values()), str(path),
                      input_names=list(inputs), output_names=["masks", "iou_predictions", "low_res_masks"],
                      opset_version=OPSET, do_constant_folding=True, dynamo=False,
                      dynamic_axes={"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}})


def main(argv: list[str]) -> int:
    checkpoint, architecture, out = Path(argv[0]), argv[1], Path(argv[2])
    out.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        sam = build(checkpoint, architecture)
        export_encoder(sam, out / "encoder.onnx")
        export_decoder(sam, out / "decoder.onnx")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
