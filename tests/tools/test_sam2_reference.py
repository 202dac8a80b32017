"""SAM 2.1 exports and runs here: a small random-initialised SAM 2.1 (the published prompt
encoder and mask decoder, a five-block Hiera; sam2 1.1.0 in the `sam2` tool venv), its
encoder and decoder exported to ONNX by prelabel/core/models/convert/sam2_to_onnx.py and run
by onnxruntime on the suite's input and prompt encoding (services.modelkit.sam2_onnx),
equal Meta's SAM2ImagePredictor (set_image + predict) on the same weights: points, one
point, box, points + box and a refinement step (the previous answer's low-resolution mask),
each with one mask and with the three multimask candidates.

Random weights give logits near 0, so SAM 2's single-mask answer always falls back to a
multimask candidate (its stability check); the same model with mask 0 sharpened (logits
x100) makes mask 0 stable, so both branches of the choice are compared. Masks of every
size (areas checked): agreement is not two empty masks agreeing."""
from __future__ import annotations

import pytest

pytestmark = [pytest.mark.tools, pytest.mark.timeout(600)]

PROMPTS = ("points", "one-point", "box", "points+box", "refinement")
CASES = [f"{model}{prompt}/{mode}" for model in ("", "sharp:") for prompt in PROMPTS for mode in ("single", "multi")]


@pytest.fixture(scope="module")
def reference(run_probe, tmp_path_factory):
    return run_probe("sam2", "sam2_reference.py", tmp_path_factory.mktemp("sam2"), timeout=600)


@pytest.mark.parametrize("model", ["", "sharp:"])
def test_the_suite_s_encoder_input_gives_sam2_predictor_s_features(reference, model):
    # the suite resizes to uint8 (Pillow), SAM 2 in float (torchvision): rounding only
    assert max(reference[f"{model}feature_diff"]) <= 0.05


@pytest.mark.parametrize("case", CASES)
def test_the_suite_s_sam2_decoding_equals_sam2_image_predictor(reference, case):
    result = reference[case]
    expected = 3 if case.endswith("multi") else 1
    assert result["count"] == [expected, expected]
    assert result["shape"] == [400, 600]  # masks in source pixels
    assert result["iou"] >= 0.99
    assert result["score_diff"] <= 1e-3  # predicted IoUs
    assert result["low_res_diff"] <= 1e-2 * max(1.0, result["low_res_scale"])
    assert all(0 < area < 400 * 600 for area in result["areas"]), "a degenerate mask proves nothing"


def test_both_branches_of_sam2_s_single_mask_choice_are_compared(reference):
    assert {tuple(reference[f"{prompt}/single"]["chosen"]) for prompt in PROMPTS} <= {(1,), (2,), (3,)}
    assert all(reference[f"sharp:{prompt}/single"]["chosen"] == [0] for prompt in PROMPTS)
