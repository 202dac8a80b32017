"""SAM 2's choice of masks (services.modelkit.sam2_onnx.chosen), on made-up logits: the
three multimask candidates, or mask 0 when its stability (area above +0.05 over area above
-0.05) is at least 0.98, else the multimask candidate of the highest predicted IoU. (On a
real SAM 2.1 against SAM2ImagePredictor: tests/tools/test_sam2_reference.py.)"""
from __future__ import annotations

import numpy as np
import pytest

from services.modelkit import sam2_onnx
from services.modelkit.sam_onnx import SamPrompt

pytestmark = pytest.mark.timeout(30)

IOUS = np.array([0.9, 0.2, 0.7, 0.5], np.float32)


def logits(in_band: int) -> np.ndarray:
    """Four masks; mask 0 has 1000 pixels at logit 5 and `in_band` at 0 (inside +-0.05)."""
    out = np.full((4, 256, 256), -5.0, np.float32)
    flat = out[0].reshape(-1)
    flat[:1000] = 5.0
    flat[1000:1000 + in_band] = 0.0
    return out


def test_multimask_answers_the_three_candidates():
    assert sam2_onnx.chosen(logits(0), IOUS, multimask=True) == [1, 2, 3]


@pytest.mark.parametrize(("in_band", "expected"), [(0, [0]), (20, [0]), (21, [2]), (500, [2])])
def test_one_mask_is_mask_0_while_stable_else_the_best_candidate(in_band, expected):
    # stability 1000 / (1000 + in_band): 0.98 at 20 (kept), below at 21
    assert sam2_onnx.chosen(logits(in_band), IOUS, multimask=False) == expected


def test_an_empty_mask_0_is_stable():
    assert sam2_onnx.chosen(np.full((4, 256, 256), -5.0, np.float32), IOUS, multimask=False) == [0]


def test_a_box_comes_before_the_clicks_scaled_to_the_square_input():
    prompt = SamPrompt(points=np.array([[300.0, 200.0]]), labels=np.array([1]), box=np.array([0.0, 0.0, 600.0, 400.0]),
                       previous=None)
    points = sam2_onnx.prompt_points(prompt, 400, 600)
    np.testing.assert_allclose(points.coords, [[0, 0], [1024, 1024], [512, 512]])
    np.testing.assert_array_equal(points.labels, [2, 3, 1])
