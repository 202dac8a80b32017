"""The Mask R-CNN Triton model body (GPU profile code), run in-process on a lite config (random weights):
prompted rows, mixed batches, channel choice, weights provenance."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from services.modelkit.rcnn import build_rcnn
from services.modelkit.segmenter import Segmenter
from services.modelkit.settings import ModelSettings
from services.modelkit.weights import MissingWeightsError
from tests.unit.rcnn_batches import prompt_batch, random_images
from tests.unit.triton_models import initialised, rcnn_lite_config, run

ARCH = "maskrcnn_mobilenet_v3_large_320_fpn_lite"


@pytest.fixture(scope="module")
def segmenter():
    return initialised(Segmenter, "segmenter", rcnn_lite_config("segmenter"))


def batch(images: np.ndarray, prompts: list[list[tuple]], labels: list[list[int]] | None = None) -> dict:
    # PROMPT_LABELS always, as Triton sends it from the segmenter's config: unknown unless given.
    return prompt_batch(images, prompts, labels or [[] for _ in images])


@pytest.fixture(scope="module")
def images():
    return random_images(7)


def test_segmenter_answers_one_row_per_prompt_when_prompted(segmenter, images):
    prompts = [(10, 20, 100, 200), (0, 0, 320, 320), (300, 300, 320, 320)]
    out = run(segmenter, batch(images[:1], [prompts]))
    assert out["COUNT"][0, 0] == 3
    np.testing.assert_allclose(out["BOXES"][0, :3], prompts)
    assert out["MASKS"].shape == (1, 32, 28, 28)
    masks = out["MASKS"][0, :3]
    assert ((masks >= 0) & (masks <= 1)).all()
    assert not out["MASKS"][0, 3:].any() and not out["SCORES"][0, 3:].any()  # padding
    assert set(out["LABELS"][0, :3]) <= set(range(1, 91))


def test_segmenter_gives_each_item_its_own_answer_when_modes_are_mixed_in_a_batch(segmenter, images):
    prompts = [(40, 40, 200, 260)]
    alone_auto = run(segmenter, batch(images[:1], [[]]))
    alone_prompted = run(segmenter, batch(images[1:], [prompts]))
    mixed = run(segmenter, batch(images, [[], prompts]))
    for name in ("BOXES", "SCORES", "LABELS", "MASKS", "COUNT"):
        np.testing.assert_allclose(mixed[name][0], alone_auto[name][0], atol=1e-4, err_msg=name)
        np.testing.assert_allclose(mixed[name][1], alone_prompted[name][0], atol=1e-4, err_msg=name)
    assert mixed["COUNT"][1, 0] == 1


def test_segmenter_uses_the_prompt_category_channel_when_one_is_given(segmenter, images):
    prompts = [(40, 40, 200, 260), (40, 40, 200, 260)]
    out = run(segmenter, batch(images[:1], [prompts], labels=[[18, 0]]))
    assert out["LABELS"][0, 0] == 18  # caller's category (dog)
    chosen = out["LABELS"][0, 1]  # the box classifier's best category
    assert chosen != 0
    if chosen != 18:  # different channels of the same box give different masks
        assert not np.allclose(out["MASKS"][0, 0], out["MASKS"][0, 1])


def test_build_rcnn_refuses_random_weights_when_they_are_not_allowed(tmp_path):
    settings = ModelSettings(weights_dir=tmp_path, allow_random_weights=False)
    with pytest.raises(MissingWeightsError, match="segmenter.pt"):
        build_rcnn(model_name="segmenter", architecture=ARCH, input_size=320, max_detections=32,
                   box_score_thresh=0.05, settings=settings, device=torch.device("cpu"))


def test_build_rcnn_reports_custom_weights_when_a_model_file_is_present(tmp_path, segmenter):
    torch.save(segmenter.model.state_dict(), tmp_path / "segmenter.pt")
    settings = ModelSettings(weights_dir=tmp_path, allow_random_weights=False, random_seed=123)
    model, info = build_rcnn(model_name="segmenter", architecture=ARCH, input_size=320, max_detections=32,
                             box_score_thresh=0.05, settings=settings, device=torch.device("cpu"))
    assert info.kind == "custom" and info.source.startswith("segmenter.pt sha256:")
    assert info.architecture == ARCH
    first = next(iter(model.state_dict().values()))
    assert torch.equal(first, next(iter(segmenter.model.state_dict().values())))


def test_segmenter_reports_random_weights_when_none_are_found(segmenter):
    assert segmenter.weights.kind == "random"
    assert segmenter.weights.architecture == ARCH
