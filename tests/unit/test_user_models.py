"""The user model repository without an export: the configs `models add` writes fit their
contract heads and the implementation's parameters, names stay unique beside
model_repository/, and the devstack hands each service the user models its head serves.
(Adding real exports, serving them in Triton and end to end: tests/tools/test_ultralytics_model.py.)"""
from __future__ import annotations

import json
from dataclasses import asdict

import pytest
from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2

from prelabel.core.labels import custom_categories
from prelabel.core.models.ultralytics_layouts import UltralyticsLayout
from prelabel.core.models.user_models import (
    BUILT_IN_MODELS,
    INFO_FILE,
    UserModel,
    UserModelError,
    add_model,
    model_config,
)
from services.devstack import DevstackSettings, user_model_env
from services.modelkit.contract import check_config
from services.modelkit.parameters import parse_parameters
from services.modelkit.ultralytics_model import UltralyticsParameters
from tests.unit.triton_models import REPO_ROOT

pytestmark = pytest.mark.timeout(60)


def layout(task: str, family: str = "yolo", size: tuple[int, int] = (640, 640)) -> UltralyticsLayout:
    return UltralyticsLayout(family=family, task=task, names=("scratch", "dent"), input_name="images",
                             input_dtype="float32", input_height=size[0], input_width=size[1], batch_size=None,
                             output_name="output0", protos_name="output1" if task == "segment" else None,
                             mask_dim=32 if task == "segment" else 0,
                             kpt_shape=(17, 3) if task == "pose" else None, license="")


def parsed(text: str) -> dict:
    config = text_format.Parse(text, model_config_pb2.ModelConfig())
    return json_format.MessageToDict(config, preserving_proto_field_name=True)


@pytest.mark.parametrize(("task", "family", "head"), [("detect", "yolo", "detector"), ("detect", "rtdetr", "detector"),
                                                      ("segment", "yolo", "promptable_masks"),
                                                      ("pose", "end2end", "keypoints")])
@pytest.mark.parametrize("gpu", [False, True])
def test_written_configs_fit_their_head_and_the_implementations_parameters(task, family, head, gpu):
    config = parsed(model_config("damage", layout(task, family, (480, 640)), "a" * 64, "MIT", gpu))
    assert check_config(config).name == head
    params = parse_parameters(UltralyticsParameters, config)
    assert (params.task, params.family, params.license, params.sha256) == (task, family, "MIT", "a" * 64)
    assert custom_categories(params.names) == {1: "scratch", 2: "dent"}
    assert config["input"][0]["dims"] == ["640", "640", "3"]  # square IMAGE; the model re-fits it
    assert config["instance_group"][0]["kind"] == ("KIND_GPU" if gpu else "KIND_CPU")


def test_built_in_names_are_model_repository_and_refused_as_user_model_names(tmp_path):
    assert sorted(BUILT_IN_MODELS) == sorted(p.name for p in (REPO_ROOT / "model_repository").iterdir() if p.is_dir())
    with pytest.raises(UserModelError, match="built-in"):
        add_model("coco_detector", tmp_path / "any.onnx", repository=tmp_path)


def user_model(repo, name: str, head: str, task: str) -> None:
    (repo / name).mkdir(parents=True)
    model = UserModel(name, task, "yolo", head, ("scratch", "dent"), "a" * 64, "", "/x.onnx")
    (repo / name / INFO_FILE).write_text(json.dumps(asdict(model)))


def test_devstack_gives_each_service_the_user_models_its_head_serves(tmp_path):
    user_model(tmp_path, "damage", "detector", "detect")
    user_model(tmp_path, "parts", "promptable_masks", "segment")
    env = user_model_env(DevstackSettings(detect_model="damage", segment_model="parts"), tmp_path)
    assert json.loads(env["detection"]["PRELABEL_MODELS"])[-1] == "damage"
    assert env["detection"]["PRELABEL_DEFAULT_MODEL"] == "damage"
    assert env["segmentation"] == {"PRELABEL_SEGMENTATION_MODEL": "parts"}
    assert env["keypoints"] == {}
    with pytest.raises(ValueError, match="needs a detector model"):
        user_model_env(DevstackSettings(detect_model="parts"), tmp_path)
    with pytest.raises(ValueError, match="not a user model"):
        user_model_env(DevstackSettings(keypoints_model="nobody"), tmp_path)
