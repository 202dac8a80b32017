"""The Keypoint R-CNN Triton model body (GPU profile code), run in-process on a lite config (random
weights): prompted rows, keypoints inside their boxes, mixed batches."""
from __future__ import annotations

import numpy as np
import pytest

from services.modelkit.keypointer import Keypointer
from tests.unit.rcnn_batches import prompt_batch, random_images
from tests.unit.triton_models import initialised, rcnn_lite_config, run


@pytest.fixture(scope="module")
def keypointer():
    return initialised(Keypointer, "keypointer", rcnn_lite_config("keypointer"))


@pytest.fixture(scope="module")
def images():
    return random_images(11)


def test_keypointer_puts_every_keypoint_inside_its_prompt_box_when_prompted(keypointer, images):
    prompts = [(10.5, 20.25, 100, 200), (250, 0, 320, 40), (0, 0, 320, 320)]
    out = run(keypointer, prompt_batch(images[:1], [prompts]))
    assert out["COUNT"][0, 0] == 3
    np.testing.assert_allclose(out["BOXES"][0, :3], prompts)
    assert (out["LABELS"][0, :3] == 1).all()
    for k, (x0, y0, x1, y1) in enumerate(prompts):
        xy = out["KEYPOINTS"][0, k]
        assert xy.shape == (17, 2)
        assert (xy[:, 0] >= x0).all() and (xy[:, 0] <= x1).all(), (k, xy)
        assert (xy[:, 1] >= y0).all() and (xy[:, 1] <= y1).all(), (k, xy)
    scores = out["KEYPOINT_SCORES"][0, :3]
    assert ((scores >= 0) & (scores <= 1)).all()
    assert ((out["SCORES"][0, :3] >= 0) & (out["SCORES"][0, :3] <= 1)).all()


def test_keypointer_gives_each_item_its_own_answer_when_modes_are_mixed_in_a_batch(keypointer, images):
    prompts = [(40, 40, 200, 260), (100, 10, 180, 300)]
    alone_auto = run(keypointer, prompt_batch(images[:1], [[]]))
    alone_prompted = run(keypointer, prompt_batch(images[1:], [prompts]))
    mixed = run(keypointer, prompt_batch(images, [[], prompts]))
    for name in ("BOXES", "SCORES", "LABELS", "KEYPOINTS", "KEYPOINT_SCORES", "COUNT"):
        np.testing.assert_allclose(mixed[name][0], alone_auto[name][0], atol=1e-3, err_msg=name)
        np.testing.assert_allclose(mixed[name][1], alone_prompted[name][0], atol=1e-3, err_msg=name)
    assert mixed["COUNT"][1, 0] == 2


def test_keypointer_keeps_automatic_keypoints_inside_detected_boxes_when_not_prompted(keypointer, images):
    out = run(keypointer, prompt_batch(images[:1], [[]]))
    n = out["COUNT"][0, 0]
    assert 0 < n <= 32  # random weights score every proposal 0.5
    boxes, xy = out["BOXES"][0, :n], out["KEYPOINTS"][0, :n]
    assert (xy[..., 0] >= boxes[:, None, 0] - 1e-3).all() and (xy[..., 0] <= boxes[:, None, 2] + 1e-3).all()
    assert (xy[..., 1] >= boxes[:, None, 1] - 1e-3).all() and (xy[..., 1] <= boxes[:, None, 3] + 1e-3).all()
