"""Run with the `sam` tool venv: a small random-initialised SAM (the published decoder's
sizes, a one-block encoder), Meta's SamPredictor.predict as the reference, the decoder
exported with Meta's SamOnnxModel (return_single_mask=False) run by onnxruntime on inputs
made by services.modelkit.sam_onnx, on the embedding of the encoder exported to ONNX and
fed by sam_onnx.encoder_input. Prints one JSON line: the largest embedding difference and,
per case, the IoU of the masks, the largest predicted-IoU, logit and low-res differences,
the areas, and the IoU of the masks sam_onnx.upscaled makes from the low-res ones."""
from __future__ import annotations

import json
import sys
from functools import partial
from pathlib import Path

import numpy as np
import onnxruntime
import skimage.data
import torch
from segment_anything import SamPredictor
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer
from segment_anything.utils.onnx import SamOnnxModel

from services.modelkit import sam_onnx as sam_prompts
from services.modelkit.sam_onnx import SamPrompt


def tiny_sam() -> Sam:
    torch.manual_seed(0)
    encoder = ImageEncoderViT(depth=1, embed_dim=64, img_size=1024, mlp_ratio=4,
                              norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=2, patch_size=16,
                              qkv_bias=True, use_rel_pos=True, global_attn_indexes=(0,), window_size=14,
                              out_chans=256)
    sam = Sam(image_encoder=encoder,
              prompt_encoder=PromptEncoder(embed_dim=256, image_embedding_size=(64, 64),
                                           input_image_size=(1024, 1024), mask_in_chans=16),
              mask_decoder=MaskDecoder(num_multimask_outputs=3,
                                       transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048,
                                                                     num_heads=8),
                                       transformer_dim=256, iou_head_depth=3, iou_head_hidden_dim=256),
              pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375])
    return sam.eval()


def export(sam: Sam, path: Path) -> None:
    model = SamOnnxModel(sam, return_single_mask=False)
    inputs = {
        "image_embeddings": torch.randn(1, 256, 64, 64),
        "point_coords": torch.randint(0, 1024, (1, 5, 2), dtype=torch.float),
        "point_labels": torch.randint(0, 4, (1, 5), dtype=torch.float),
        "mask_input": torch.randn(1, 1, 256, 256),
        "has_mask_input": torch.tensor([1], dtype=torch.float),
        "orig_im_size": torch.tensor([1500, 2250], dtype=torch.float),
    }
    torch.onnx.export(model, tuple(inputs.values()), str(path), input_names=list(inputs),
                      output_names=["masks", "iou_predictions", "low_res_masks"], opset_version=17,
                      dynamic_axes={"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}},
                      do_constant_folding=True, dynamo=False)


def export_encoder(sam: Sam, path: Path) -> None:
    torch.onnx.export(sam.image_encoder, (torch.randn(1, 3, 1024, 1024),), str(path), input_names=["image"],
                      output_names=["image_embeddings"], opset_version=17, dynamo=False)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def main() -> None:
    out = Path(sys.argv[1])
    image = skimage.data.coffee()  # 400 x 600
    height, width = image.shape[:2]
    sam = tiny_sam()
    predictor = SamPredictor(sam)
    predictor.set_image(image)
    export(sam, out / "decoder.onnx")
    session = onnxruntime.InferenceSession(str(out / "decoder.onnx"), providers=["CPUExecutionProvider"])
    export_encoder(sam, out / "encoder.onnx")
    encoder = onnxruntime.InferenceSession(str(out / "encoder.onnx"), providers=["CPUExecutionProvider"])
    embedding = encoder.run(None, {"image": sam_prompts.encoder_input(image)})[0]
    report: dict = {"embedding_diff": float(np.abs(embedding - predictor.get_image_embedding().numpy()).max())}

    points = np.array([[300.0, 200.0], [420.0, 385.0]])
    labels = np.array([1, 0])
    box = np.array([80.0, 30.0, 480.0, 360.0])
    first_low_res = predictor.predict(points[:1], labels[:1], multimask_output=False, return_logits=True)[2]
    cases = {
        "points": (points, labels, None, None),
        "box": (np.zeros((0, 2)), np.zeros(0, int), box, None),
        "points+box": (points, labels, box, None),
        "refinement": (points, labels, None, first_low_res[0]),
    }
    for name, (p, lab, b, previous) in cases.items():
        for multimask in (False, True):
            ref_masks, ref_scores, ref_low = predictor.predict(
                point_coords=p if len(p) else None, point_labels=lab if len(p) else None, box=b,
                mask_input=None if previous is None else previous[None], multimask_output=multimask,
                return_logits=True)
            prompt = SamPrompt(points=p, labels=lab, box=b, previous=previous)
            outputs = session.run(None, sam_prompts.decoder_inputs(prompt, embedding, height, width))
            got = sam_prompts.candidates(*outputs, multimask=multimask)
            ref_binary = ref_masks > sam_prompts.MASK_THRESHOLD
            chosen = slice(1, None) if multimask else slice(0, 1)
            report[f"{name}/{'multi' if multimask else 'single'}"] = {
                "count": [len(got.masks), len(ref_masks)],
                "iou": min(iou(g, r) for g, r in zip(got.masks, ref_binary, strict=True)),
                "score_diff": float(np.abs(got.scores - ref_scores).max()),
                "logit_diff": float(np.abs(outputs[0][0, chosen] - ref_masks).max()),
                "low_res_diff": float(np.abs(got.low_res - ref_low).max()),
                # what a server makes from the low-res masks alone (the decoder model's output)
                "upscaled_iou": min(iou(u > sam_prompts.MASK_THRESHOLD, r) for u, r in zip(
                    sam_prompts.upscaled(outputs[2][0, chosen], height, width), ref_binary, strict=True)),
                "areas": [int(m.sum()) for m in ref_binary],
                "shape": list(got.masks.shape[1:]),
            }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
