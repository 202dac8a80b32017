"""Every model config (CPU config.pbtxt and configs/*.pbtxt) against the one tensor
contract, what a broken config does at model load, and that each task's default models
implement a head that task decodes."""
from __future__ import annotations

import copy

import pytest

from services.detection.head import DetectHead
from services.detection.settings import DetectionSettings
from services.keypoints.head import KeypointHead
from services.keypoints.settings import KeypointSettings
from services.modelkit.contract import HEADS, ContractError, check_config
from services.modelkit.entrypoint import IMPLEMENTATIONS, implementation_class
from services.modelkit.nanodet import NanoDetDetector
from services.segmentation.head import SegmentHead
from services.segmentation.settings import SegmentationSettings
from tests.unit.triton_models import REPO_ROOT, config_json, triton_args

CONFIGS = sorted(
    (path.parent.name if path.name == "config.pbtxt" else path.parent.parent.name,
     "cpu" if path.name == "config.pbtxt" else path.stem)
    for path in (REPO_ROOT / "model_repository").glob("*/**/*.pbtxt")
)


def test_every_model_folder_has_a_cpu_and_a_gpu_config():
    models = {p.name for p in (REPO_ROOT / "model_repository").iterdir() if p.is_dir()}
    assert {(m, "cpu") for m in models} | {(m, "gpu") for m in models} == set(CONFIGS)


@pytest.mark.parametrize("model,profile", CONFIGS)
def test_config_meets_its_head_and_names_a_known_implementation_when_shipped(model, profile):
    config = config_json(model, profile)
    head = check_config(config)
    assert head.name in HEADS
    assert implementation_class(config) is not None
    # Services and models agree on names: every output the head declares is served.
    assert [o["name"] for o in config["output"]] == head.output_names()


def test_contract_names_the_missing_output_when_config_lacks_one():
    config = config_json("segmenter")
    config["output"] = [o for o in config["output"] if o["name"] != "MASKS"]
    with pytest.raises(ContractError, match=r"segmenter \(promptable_masks head\): missing output MASKS"):
        check_config(config)


@pytest.mark.parametrize("edit,message", [
    (lambda c: c["output"][1].update(data_type="TYPE_INT32"), "SCORES is TYPE_INT32"),
    (lambda c: c["output"][1].update(dims=["99"]), "N = 99 here but 32 elsewhere"),
    (lambda c: c["input"][0].update(dims=["512", "400", "3"]), "S = 400 here but 512 elsewhere"),
    (lambda c: c["input"][1].update(dims=["64", "4"]), "P = 64 must not exceed N = 32"),
    (lambda c: c["parameters"].pop("head"), "parameter 'head' is ''"),
])
def test_contract_rejects_config_with_message_when_tensor_wrong(edit, message):
    config = copy.deepcopy(config_json("keypointer"))
    edit(config)
    with pytest.raises(ContractError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_config(config)


def test_model_refuses_to_load_when_its_config_breaks_the_contract():
    config = config_json("coco_detector")
    config["output"] = [o for o in config["output"] if o["name"] != "COUNT"]
    with pytest.raises(ContractError, match="missing output COUNT"):
        NanoDetDetector().initialize(triton_args("coco_detector", config))


def test_every_implementation_resolves_to_a_model_class():
    for name in IMPLEMENTATIONS:
        cls = implementation_class({"name": "m", "parameters": {"implementation": {"string_value": name}}})
        assert callable(getattr(cls, "execute", None)) and callable(getattr(cls, "initialize", None)), name


TASK_HEADS = [DetectHead(DetectionSettings()), SegmentHead(SegmentationSettings()), KeypointHead(KeypointSettings())]


@pytest.mark.parametrize("profile", ["cpu", "gpu"])
@pytest.mark.parametrize("task", TASK_HEADS, ids=lambda h: h.rpc)
def test_each_task_default_models_implement_a_contract_head_it_decodes(task, profile):
    # What the services check at start-up against Triton, here against the shipped configs.
    for model, allowed in task.model_heads().items():
        assert allowed <= set(HEADS), f"{task.rpc} names unknown heads {sorted(allowed - set(HEADS))}"
        assert check_config(config_json(model, profile)).name in allowed, (model, profile)
