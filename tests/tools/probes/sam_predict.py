"""Run with the `sam` or `sam2` tool venv: Meta's predictor (SamPredictor, or SAM 2's
SAM2ImagePredictor) on the weights sam_export.py / sam2_export.py saved, for the prompts of
a JSON file (the reference of tests/tools/test_sam_clicks.py and test_sam2_clicks.py).

    sam_predict.py sam|sam2 WEIGHTS.pt IMAGE CASES.json OUT.npz

CASES: {name: {"points": [[x, y], ...], "labels": [1 | 0, ...], "box": [x0, y0, x1, y1] |
null, "previous": NPY file of a [256, 256] float32 mask | null, "multimask": bool}}. OUT
holds, per case, `<name>/masks` (bool [n, H, W]) and `<name>/scores` (float32 [n]), in the
predictor's order. Prints one JSON line: the case names."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def predictor(family: str, weights: Path):
    """The family's tiny model with the saved weights, in its own predictor (each import
    exists only in its own venv)."""
    if family == "sam":
        from sam_reference import tiny_sam
        from segment_anything import SamPredictor

        model, make = tiny_sam(), SamPredictor
    else:
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        from prelabel.core.models.convert.sam2_to_onnx import tiny_sam2

        model, make = tiny_sam2(), SAM2ImagePredictor
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return make(model.eval())


def main() -> None:
    family = sys.argv[1]
    weights, image_path, cases_path, out = (Path(a) for a in sys.argv[2:6])
    reference = predictor(family, weights)
    reference.set_image(np.asarray(Image.open(image_path).convert("RGB")))
    arrays = {}
    cases = json.loads(cases_path.read_text())
    for name, case in cases.items():
        points = np.asarray(case["points"], np.float64).reshape(-1, 2)
        previous = None if case["previous"] is None else np.load(case["previous"])[None]
        masks, scores, _ = reference.predict(
            point_coords=points if len(points) else None,
            point_labels=np.asarray(case["labels"]) if len(points) else None,
            box=None if case["box"] is None else np.asarray(case["box"], np.float64),
            mask_input=previous, multimask_output=case["multimask"])
        arrays[f"{name}/masks"], arrays[f"{name}/scores"] = masks.astype(bool), scores.astype(np.float32)
    np.savez_compressed(out, **arrays)
    print(json.dumps(sorted(cases)))


if __name__ == "__main__":
    main()
