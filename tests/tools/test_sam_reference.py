"""SAM through the suite's encoder input and prompt encoding (services.modelkit.sam_onnx)
equals Meta's SamPredictor (set_image + predict) on the same weights: a small
random-initialised SAM (the published decoder's sizes and ONNX interface, a one-block
encoder), the encoder exported to ONNX and the decoder with Meta's SamOnnxModel, both run
by onnxruntime. Points, box, points + box and a
refinement step (the previous answer's low-resolution mask), each with one mask and with
the three multimask candidates. Random weights make masks of every size (areas checked),
so agreement is not two empty masks agreeing."""
from __future__ import annotations

import pytest

pytestmark = [pytest.mark.tools, pytest.mark.timeout(600)]

CASES = [f"{prompt}/{mode}" for prompt in ("points", "box", "points+box", "refinement")
         for mode in ("single", "multi")]


@pytest.fixture(scope="module")
def reference(run_probe, tmp_path_factory):
    return run_probe("sam", "sam_reference.py", tmp_path_factory.mktemp("sam"))


def test_the_suite_s_encoder_input_gives_sam_predictor_s_embedding(reference):
    assert reference["embedding_diff"] <= 1e-3


@pytest.mark.parametrize("case", CASES)
def test_the_suite_s_sam_decoding_equals_sam_predictor(reference, case):
    result = reference[case]
    expected = 3 if case.endswith("multi") else 1
    assert result["count"] == [expected, expected]
    assert result["shape"] == [400, 600]  # masks in source pixels
    assert result["iou"] >= 0.99 and result["upscaled_iou"] >= 0.99
    assert result["score_diff"] <= 1e-3  # predicted IoUs
    assert result["logit_diff"] <= 1e-3 and result["low_res_diff"] <= 1e-3
    assert all(0 < area < 400 * 600 for area in result["areas"]), "a degenerate mask proves nothing"
