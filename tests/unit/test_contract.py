"""Every model config (CPU config.pbtxt and configs/*.pbtxt) against the one model
contract (tensors, prompt kinds, typed parameters, implementation by import path), what a
broken config does at model load, and that each task's default models implement a head
that task decodes."""
from __future__ import annotations

import copy
import dataclasses
import re
import sys

import pytest

from services.detection.head import DetectHead
from services.detection.settings import DetectionSettings
from services.keypoints.head import KeypointHead
from services.keypoints.settings import KeypointSettings
from services.modelkit.contract import (
    BOX_PROMPTS,
    HEADS,
    IMAGE,
    POINT_PROMPTS,
    PROMPT_BOXES,
    PROMPT_COUNT,
    PROMPT_KINDS,
    PROMPT_POINTS,
    SCORES,
    ContractError,
    Head,
    check_config,
)
from services.modelkit.cpu_masks import CpuMasksParameters, CpuSegmenter
from services.modelkit.entrypoint import implementation_class
from services.modelkit.nanodet import NanoDetDetector
from services.modelkit.parameters import ModelParameters, ParameterError, parse_parameters
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
def test_config_meets_its_head_and_its_parameters_parse_into_its_implementation_when_shipped(model, profile):
    config = config_json(model, profile)
    head = check_config(config)
    assert head.name in HEADS
    # Services and models agree on names: every output the head declares is served.
    assert [o["name"] for o in config["output"]] == head.output_names()
    cls = implementation_class(config)
    params = parse_parameters(cls.parameters_class, config)
    assert params.head == head.name
    assert set(config["parameters"]) <= {f.name for f in dataclasses.fields(params)}


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


def with_parameter(config: dict, name: str, value: str) -> dict:
    config = copy.deepcopy(config)
    config["parameters"][name] = {"string_value": value}
    return config


def test_parameters_refuse_a_typo_naming_it_and_the_parameter_meant_when_a_name_is_unknown():
    config = config_json("segmenter")
    config["parameters"]["box_score_flor"] = config["parameters"].pop("box_score_floor")
    with pytest.raises(ParameterError, match=r"segmenter: unknown parameter 'box_score_flor' .*"
                                             r"did you mean 'box_score_floor'\?"):
        parse_parameters(CpuMasksParameters, config)


@pytest.mark.parametrize("name,value,message", [
    ("num_threads", "one", "parameter 'num_threads' = 'one' is not a valid int"),
    ("num_threads", "-1", "parameter 'num_threads' = -1: must be >= 0"),
    ("grabcut_probability", "1.5", "parameter 'grabcut_probability' = 1.5: must be in (0, 1]"),
    ("box_score_floor", "nan", "parameter 'box_score_floor' = nan: must be in [0, 1]"),
    ("label_map", "cocoa", "parameter 'label_map' = 'cocoa': expected one of"),
])
def test_parameters_refuse_a_bad_value_naming_the_parameter_when_it_does_not_convert_or_fit(name, value, message):
    with pytest.raises(ParameterError, match="segmenter: " + re.escape(message)):
        parse_parameters(CpuMasksParameters, with_parameter(config_json("segmenter"), name, value))


def test_parameters_take_the_declared_default_when_a_parameter_is_not_set():
    config = config_json("segmenter")
    del config["parameters"]["grabcut_iterations"]
    assert parse_parameters(CpuMasksParameters, config).grabcut_iterations == 5


def test_parameters_refuse_a_config_without_a_required_parameter():
    config = config_json("coco_detector", "gpu")
    del config["parameters"]["architecture"]
    cls = implementation_class(config)
    with pytest.raises(ParameterError, match="coco_detector: TorchvisionParameters needs parameter.s. architecture"):
        parse_parameters(cls.parameters_class, config)


def test_model_refuses_to_load_naming_the_parameter_when_its_config_has_a_typo():
    config = config_json("segmenter")
    config["parameters"]["grabcut_iteration"] = {"string_value": "3"}
    with pytest.raises(ParameterError, match="unknown parameter 'grabcut_iteration'"):
        CpuSegmenter().initialize(triton_args("segmenter", config))


USER_MODULE = '''
from dataclasses import dataclass

from services.modelkit.nanodet import NanoDetDetector
from services.modelkit.parameters import BoxFloorParameters


@dataclass(frozen=True, kw_only=True)
class MyParameters(BoxFloorParameters):
    my_setting: int = 3
    """A parameter only this model has."""


class MyDetector(NanoDetDetector):
    parameters_class = MyParameters


class NotAModel:
    parameters_class = MyParameters
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A module in a model folder of its own (Triton puts the folder on sys.path)."""
    (tmp_path / "my_model_code.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "my_model_code"
    sys.modules.pop("my_model_code", None)


def test_implementation_resolves_by_import_path_when_the_module_is_outside_modelkit(user_module):
    config = with_parameter(config_json("coco_detector"), "implementation", f"{user_module}:MyDetector")
    cls = implementation_class(config)
    assert cls.__name__ == "MyDetector" and cls.__module__ == user_module
    assert parse_parameters(cls.parameters_class, with_parameter(config, "my_setting", "7")).my_setting == 7


@pytest.mark.parametrize("path,message", [
    ("nanodet", r"expected an import path 'module:Class'"),
    ("services.modelkit.nanodet:", r"expected an import path 'module:Class'"),
    ("services.modelkit.nanodett:NanoDetDetector", r"cannot import 'services.modelkit.nanodett'"),
    ("services.modelkit.nanodet:NanoDetDetektor", r"module 'services.modelkit.nanodet' has no 'NanoDetDetektor'"),
    ("services.modelkit.nanodet:NanoDet", r"is not a model class: it must subclass .*BatchedModel"),
    ("{user}:NotAModel", r"is not a model class"),
])
def test_implementation_is_refused_with_the_reason_when_it_does_not_name_a_model_class(user_module, path, message):
    config = with_parameter(config_json("coco_detector"), "implementation", path.format(user=user_module))
    with pytest.raises(ParameterError, match="coco_detector: .*" + message):
        implementation_class(config)


def test_common_parameters_are_the_base_of_every_shipped_implementation():
    for model, profile in CONFIGS:
        assert issubclass(implementation_class(config_json(model, profile)).parameters_class, ModelParameters)


def test_prompt_kinds_declare_boxes_points_masks_served_and_text_next():
    assert {k.name: k.served for k in PROMPT_KINDS.values()} == {
        "boxes": True, "points": True, "masks": True, "text": False}
    assert {h.name: [k.name for k in h.prompts] for h in HEADS.values()} == {
        "detector": [], "face_detector": [], "keypoints": ["boxes"], "promptable_masks": ["boxes"],
        "image_encoder": [], "mask_decoder": ["points", "masks"], "sam2_image_encoder": [],
        "sam2_mask_decoder": ["points", "masks"]}


@pytest.mark.parametrize("inputs,prompts,message", [
    ((IMAGE, PROMPT_BOXES, PROMPT_COUNT), (POINT_PROMPTS,), "takes points prompts without PROMPT_POINTS"),
    ((IMAGE, PROMPT_POINTS, PROMPT_BOXES, PROMPT_COUNT), (POINT_PROMPTS,),
     "input PROMPT_BOXES belongs to no prompt kind it takes"),
    ((IMAGE, PROMPT_BOXES), (BOX_PROMPTS,), "PROMPT_COUNT is an input exactly when the head takes prompts"),
])
def test_head_declaration_is_refused_when_its_inputs_and_prompt_kinds_disagree(inputs, prompts, message):
    with pytest.raises(ContractError, match=message):
        Head("clicks", inputs, (SCORES,), prompts=prompts)


TASK_HEADS = [DetectHead(DetectionSettings()), SegmentHead(SegmentationSettings()), KeypointHead(KeypointSettings())]


@pytest.mark.parametrize("profile", ["cpu", "gpu"])
@pytest.mark.parametrize("task", TASK_HEADS, ids=lambda h: h.rpc)
def test_each_task_default_models_implement_a_contract_head_it_decodes(task, profile):
    # What the services check at start-up against Triton, here against the shipped configs.
    for model, allowed in task.model_heads().items():
        assert allowed <= set(HEADS), f"{task.rpc} names unknown heads {sorted(allowed - set(HEADS))}"
        assert check_config(config_json(model, profile)).name in allowed, (model, profile)


@pytest.mark.parametrize("task", TASK_HEADS, ids=lambda h: h.rpc)
def test_each_task_reads_only_prompt_kinds_a_model_head_it_calls_takes(task):
    taken = {kind for allowed in task.model_heads().values() for name in allowed for kind in HEADS[name].prompts}
    assert set(task.prompt_kinds) <= taken, task.rpc
    assert all(kind.served for kind in task.prompt_kinds), "a task reads a kind the contract says is not served"
