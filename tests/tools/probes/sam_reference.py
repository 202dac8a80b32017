"""Run with the `sam` tool venv: a small random-initialised SAM (the published decoder's
sizes, a one-block encoder), Meta's SamPredictor.predict as the reference, the decoder
exported with Meta's SamOnnxModel (return_single_mask=False) run by onnxruntime on inputs
made by services.modelkit.sam_onnx, on the embedding of the encoder exported to ONNX and
fed by sam_onnx.encoder_input. Prints one JSON line: the largest embedding difference and,
per case, the IoU of the masks, the largest predicted-IoU, logit and low-res differences,
the areas, and the IoU of the masks sam_onnx.upscaled makes from the low-res ones. The
tiny SAM and both exports are the ones `prelabel models pull` uses for Meta's checkpoints
(prelabel/core/models/convert/sam_to_onnx.py)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import skimage.data
import torch
from segment_anything import SamPredictor
from segment_anything.modeling import Sam

from prelabel.core.models.convert.sam_to_onnx import export_decoder as export
from prelabel.core.models.convert.sam_to_onnx import export_encoder
from prelabel.core.models.convert.sam_to_onnx import tiny_sam as untrained_tiny_sam
from services.modelkit import sam_onnx as sam_prompts
from services.modelkit.sam_onnx import SamPrompt


def tiny_sam() -> Sam:
    """The exporter's tiny SAM (prelabel/core/models/convert/sam_to_onnx.py), seed 0."""
    torch.manual_seed(0)
    return untrained_tiny_sam().eval()


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
