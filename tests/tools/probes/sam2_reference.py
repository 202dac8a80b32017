"""Run with the `sam2` tool venv: a small random-initialised SAM 2.1 (the published prompt
encoder and mask decoder, a five-block Hiera), Meta's SAM2ImagePredictor.predict as the
reference, the encoder and decoder exported by prelabel/core/models/convert/sam2_to_onnx.py
and run by onnxruntime on inputs made by services.modelkit.sam2_onnx (the encoder fed
sam2_onnx.encoder_input, the suite's own resize). Prints one JSON line: the largest
feature differences and, per case, the counts, the IoU of the masks, the largest
predicted-IoU and low-res differences (and the logits' scale), the areas and which of the decoder's masks the
suite chose; the same for the model with mask 0 sharpened (keys "sharp:...")."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import skimage.data
import torch
from sam2.sam2_image_predictor import SAM2ImagePredictor

from prelabel.core.models.convert.sam2_to_onnx import export_decoder, export_encoder, tiny_sam2
from services.modelkit import sam2_onnx
from services.modelkit.sam_onnx import SamPrompt


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def session(path: Path) -> onnxruntime.InferenceSession:
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def sharpened(model):
    """The model with mask 0's logits scaled up 100-fold (its hypernetwork's last layer):
    random weights make logits near 0, so mask 0 is never stable and SAM 2 always falls
    back to a multimask candidate; sharpened, mask 0 is stable and answers."""
    with torch.no_grad():
        last = model.sam_mask_decoder.output_hypernetworks_mlps[0].layers[-1]
        last.weight *= 100.0
        last.bias *= 100.0
    return model


def compare(model, image: np.ndarray, out: Path, prefix: str) -> dict:
    height, width = image.shape[:2]
    with torch.no_grad():
        export_encoder(model, out / "encoder.onnx")
        export_decoder(model, out / "decoder.onnx")
    predictor = SAM2ImagePredictor(model)
    predictor.set_image(image)
    embed, high_0, high_1 = session(out / "encoder.onnx").run(None, {"image": sam2_onnx.encoder_input(image)})
    features = sam2_onnx.Sam2Features(embed, high_0, high_1)
    reference = predictor._features
    report: dict = {f"{prefix}feature_diff": [float(np.abs(got - want.numpy()).max()) for got, want in
                                     ((embed, reference["image_embed"]), (high_0, reference["high_res_feats"][0]),
                                      (high_1, reference["high_res_feats"][1]))]}
    decoder = session(out / "decoder.onnx")

    points = np.array([[300.0, 200.0], [420.0, 385.0]])
    labels = np.array([1, 0])
    box = np.array([80.0, 30.0, 480.0, 360.0])
    first_low_res = predictor.predict(points[:1], labels[:1], multimask_output=False, return_logits=True)[2]
    cases = {
        "points": (points, labels, None, None),
        "one-point": (points[:1], labels[:1], None, None),
        "box": (np.zeros((0, 2)), np.zeros(0, int), box, None),
        "points+box": (points, labels, box, None),
        "refinement": (points, labels, None, first_low_res[0]),
    }
    for name, (p, lab, b, previous) in cases.items():
        for multimask in (False, True):
            ref_masks, ref_scores, ref_low = predictor.predict(
                point_coords=p if len(p) else None, point_labels=lab if len(p) else None, box=b,
                mask_input=None if previous is None else previous[None], multimask_output=multimask)
            prompt = SamPrompt(points=p, labels=lab, box=b, previous=previous)
            feed = sam2_onnx.onnx_inputs(sam2_onnx.prompt_points(prompt, height, width), features, previous)
            low_res, ious = decoder.run(["low_res_masks", "iou_predictions"], feed)
            got = sam2_onnx.candidates(low_res, ious, height, width, multimask)
            report[f"{prefix}{name}/{'multi' if multimask else 'single'}"] = {
                "count": [len(got.masks), len(ref_masks)],
                "iou": min(iou(g, r) for g, r in zip(got.masks, ref_masks, strict=True)),
                "score_diff": float(np.abs(got.scores - ref_scores).max()),
                "low_res_diff": float(np.abs(got.low_res - ref_low).max()),
                "low_res_scale": float(np.abs(ref_low).max()),
                "areas": [int(m.sum()) for m in ref_masks],
                "shape": list(got.masks.shape[1:]),
                "chosen": sam2_onnx.chosen(low_res[0], ious[0], multimask),
            }
    return report


def main() -> None:
    out = Path(sys.argv[1])
    image = skimage.data.coffee()  # 400 x 600
    torch.manual_seed(0)
    report = compare(tiny_sam2().eval(), image, out, "")
    torch.manual_seed(0)
    report |= compare(sharpened(tiny_sam2().eval()), image, out, "sharp:")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
