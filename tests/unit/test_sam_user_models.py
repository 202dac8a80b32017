"""A SAM-interface pair in the user model repository, without the files' weights: the
add-time interface checks (prelabel/core/models/sam_interface.py, SAM's and SAM 2's) on the
edges a file declares, the two configs `models add --family sam|sam2` writes (their heads
and parameters),
removing a pair, and the devstack's PRELABEL_DEV_CLICK_MODEL. (Real exports through
Triton and the segmentation service: tests/tools/test_sam_clicks.py, test_sam2_clicks.py.)"""
from __future__ import annotations

import json
from dataclasses import asdict, replace

import pytest
from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2

from prelabel.core.models.onnx_graph import NotOnnxError, OnnxGraph, TensorInfo
from prelabel.core.models.sam_interface import (
    DECODER_INPUTS,
    DECODER_OUTPUTS,
    SAM2,
    SAM2_DECODER_INPUTS,
    SAM2_DECODER_OUTPUTS,
    SAM2_ENCODER_OUTPUTS,
    SamInterfaceError,
    check_decoder,
    check_encoder,
)
from prelabel.core.models.user_models import (
    INFO_FILE,
    UserModel,
    UserModelError,
    add_sam_model,
    list_user_models,
    remove_model,
    sam_model_config,
)
from services.devstack import DevstackSettings, user_model_env
from services.modelkit.contract import check_config
from services.modelkit.parameters import ParameterError, parse_parameters
from services.modelkit.sam_model import SamParameters

pytestmark = pytest.mark.timeout(60)


def tensors(shapes: dict) -> tuple[TensorInfo, ...]:
    return tuple(TensorInfo(name, "float32", tuple("n" if d == "?" else d for d in shape))
                 for name, shape in shapes.items())


ENCODER = OnnxGraph(8, tensors({"image": (1, 3, 1024, 1024)}), tensors({"image_embeddings": (1, 256, 64, 64)}), {})
DECODER = OnnxGraph(8, tensors(DECODER_INPUTS), tensors(DECODER_OUTPUTS), {})
SAM2_ENCODER = OnnxGraph(8, tensors({"image": (1, 3, 1024, 1024)}), tensors(SAM2_ENCODER_OUTPUTS), {})
SAM2_DECODER = OnnxGraph(8, tensors(SAM2_DECODER_INPUTS), tensors(SAM2_DECODER_OUTPUTS), {})


def test_the_interfaces_of_meta_s_exports_pass():
    check_encoder(ENCODER)
    check_decoder(DECODER)
    # symbolic dimensions (torch's export names them) pass where SAM's are numbers
    check_decoder(replace(DECODER, outputs=tuple(replace(t, shape=("a", "b", "c", "d")[:len(t.shape or ())])
                                                  for t in DECODER.outputs)))


def edited(graph: OnnxGraph, side: str, tensor: str, **change) -> OnnxGraph:
    items = tuple(replace(t, **change) if t.name == tensor else t for t in getattr(graph, side))
    return replace(graph, **{side: items})


@pytest.mark.parametrize(("graph", "check", "message"), [
    (edited(ENCODER, "inputs", "image", shape=(1, 3, 512, 512)), check_encoder,
     r"encoder input image has shape \[1, 3, 512, 512\], SAM's interface has \[1, 3, 1024, 1024\]"),
    (edited(ENCODER, "inputs", "image", elem_type="uint8"), check_encoder,
     "encoder input image is uint8, SAM's interface has float32"),
    (edited(ENCODER, "outputs", "image_embeddings", name="features"), check_encoder,
     r"encoder has no output 'image_embeddings' \(its outputs: \['features'\]"),
    (DECODER, check_encoder, "encoder has inputs .* SAM's interface does not feed"),
    (edited(DECODER, "outputs", "iou_predictions", shape=(1, 1)), check_decoder,
     "decoder output iou_predictions has shape \\[1, 1\\].*return_single_mask=True"),
    (edited(DECODER, "inputs", "mask_input", shape=(1, 1, 64, 64)), check_decoder,
     r"decoder input mask_input has shape \[1, 1, 64, 64\]"),
    (replace(DECODER, inputs=DECODER.inputs[:-1]), check_decoder, "decoder has no input 'orig_im_size'"),
    (edited(DECODER, "inputs", "point_labels", elem_type="int64"), check_decoder,
     "decoder input point_labels is int64"),
])
def test_a_file_of_another_interface_is_refused_naming_the_tensor_and_what_sam_needs(graph, check, message):
    with pytest.raises(SamInterfaceError, match=message):
        check(graph)


def test_sam2_s_interface_passes_its_exports_and_refuses_sam_s_naming_what_sam2_needs():
    check_encoder(SAM2_ENCODER, SAM2)
    check_decoder(SAM2_DECODER, SAM2)
    with pytest.raises(SamInterfaceError, match=r"encoder has no output 'high_res_feats_0'.*SAM 2's interface needs"):
        check_encoder(ENCODER, SAM2)
    with pytest.raises(SamInterfaceError, match=r"decoder has inputs \['image_embeddings', 'orig_im_size'\] SAM 2's interface does not feed"):
        check_decoder(DECODER, SAM2)
    with pytest.raises(SamInterfaceError, match="decoder has inputs .*high_res_feats_0.* SAM's interface does not feed"):
        check_decoder(SAM2_DECODER)
    with pytest.raises(SamInterfaceError, match=r"high_res_feats_1 has shape \[1, 64, 64, 64\], SAM 2's interface"):
        check_decoder(edited(SAM2_DECODER, "inputs", "high_res_feats_1", shape=(1, 64, 64, 64)), SAM2)


def parsed(text: str) -> dict:
    return json_format.MessageToDict(text_format.Parse(text, model_config_pb2.ModelConfig()),
                                     preserving_proto_field_name=True)


@pytest.mark.parametrize(("part", "head"), [("encoder", "image_encoder"), ("decoder", "mask_decoder")])
@pytest.mark.parametrize("gpu", [False, True])
def test_written_configs_fit_their_head_and_the_parameters(part, head, gpu):
    config = parsed(sam_model_config("tiny", part, "a" * 64, "Apache-2.0", "random", gpu))
    assert config["name"] == f"tiny_{part}"
    assert check_config(config).name == head
    params = parse_parameters(SamParameters, config)
    assert (params.pair, params.weights, params.license, params.sha256) == ("tiny", "random", "Apache-2.0", "a" * 64)
    config["parameters"]["weights"] = {"string_value": "borrowed"}
    with pytest.raises(ParameterError, match="weights"):
        parse_parameters(SamParameters, config)


@pytest.mark.parametrize(("part", "head"), [("encoder", "sam2_image_encoder"), ("decoder", "sam2_mask_decoder")])
def test_written_sam2_configs_fit_their_head(part, head):
    config = parsed(sam_model_config("tiny", part, "a" * 64, "Apache-2.0", "random", False, "sam2"))
    assert check_config(config).name == head
    assert config["parameters"]["implementation"]["string_value"] == f"services.modelkit.sam_model:Sam2{part.title()}"
    assert parse_parameters(SamParameters, config).pair == "tiny"


def test_add_refuses_a_bad_name_a_bad_weights_kind_and_a_file_that_is_not_onnx_naming_it(tmp_path):
    text = tmp_path / "encoder.onnx"
    text.write_text("not a model")
    with pytest.raises(UserModelError, match="model name"):
        add_sam_model("Tiny SAM", text, text, repository=tmp_path)
    with pytest.raises(UserModelError, match="weights 'borrowed'"):
        add_sam_model("tiny", text, text, weights="borrowed", repository=tmp_path)
    with pytest.raises(NotOnnxError, match="encoder.onnx"):
        add_sam_model("tiny", text, text, repository=tmp_path)
    with pytest.raises(UserModelError, match="family 'sam3'"):
        add_sam_model("tiny", text, text, repository=tmp_path, family="sam3")
    assert list(tmp_path.iterdir()) == [text]  # nothing written


def test_the_cli_says_what_a_sam_pair_needs_and_why_a_file_is_refused(tmp_path, capsys):
    from prelabel.cli import main

    repo = ["--user-models-dir", str(tmp_path / "repo")]
    assert main(["models", "add", "tiny", "--family", "sam", "--encoder", "e.onnx", *repo]) == 1
    assert "usage: prelabel models add NAME --family sam --encoder" in capsys.readouterr().err
    assert main(["models", "add", "tiny", "x.onnx", "--encoder", "e.onnx", *repo]) == 1
    assert "--encoder / --decoder are for --family sam" in capsys.readouterr().err
    text = tmp_path / "decoder.onnx"
    text.write_text("not a model")
    assert main(["models", "add", "tiny", "--family", "sam", "--encoder", str(text), "--decoder", str(text),
                 *repo]) == 1
    assert f"{text}:" in capsys.readouterr().err


def sam_pair(repo, pair: str, family: str = "sam") -> None:
    for part, head in (("encoder", "image_encoder"), ("decoder", "mask_decoder")):
        name = f"{pair}_{part}"
        (repo / name).mkdir(parents=True)
        head = f"sam2_{head}" if family == "sam2" else head
        model = UserModel(name, part, family, head, (), "a" * 64, "", f"/{part}.onnx", weights="random", pair=pair)
        (repo / name / INFO_FILE).write_text(json.dumps(asdict(model)))


def test_removing_a_pair_by_its_name_removes_both_models(tmp_path):
    sam_pair(tmp_path, "tiny")
    sam_pair(tmp_path, "other")
    assert [m.name for m in list_user_models(tmp_path)] == ["other_decoder", "other_encoder", "tiny_decoder",
                                                            "tiny_encoder"]
    remove_model("tiny", tmp_path)
    assert [m.pair for m in list_user_models(tmp_path)] == ["other", "other"]
    with pytest.raises(UserModelError, match="no user model 'tiny'"):
        remove_model("tiny", tmp_path)
    with pytest.raises(UserModelError, match="already"):
        add_sam_model("other", tmp_path / "e.onnx", tmp_path / "d.onnx", repository=tmp_path)


def test_models_list_names_the_pair_s_parts_and_their_weights(tmp_path, capsys):
    from prelabel.cli import main

    sam_pair(tmp_path, "tiny")
    assert main(["models", "list", "--user-models-dir", str(tmp_path)]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("tiny_")]
    assert [row[:5] for row in rows] == [["tiny_decoder", "decoder", "sam", "-", "random"],
                                         ["tiny_encoder", "encoder", "sam", "-", "random"]]


def test_devstack_hands_the_click_model_to_the_segmentation_service(tmp_path):
    sam_pair(tmp_path, "tiny")
    env = user_model_env(DevstackSettings(click_model="tiny"), tmp_path)
    assert env["segmentation"] == {"PRELABEL_CLICK_MODEL": "tiny"}
    with pytest.raises(ValueError, match="no SAM pair of that name"):
        user_model_env(DevstackSettings(click_model="tiny_encoder"), tmp_path)
    sam_pair(tmp_path, "tiny2", family="sam2")
    assert user_model_env(DevstackSettings(click_model="tiny2"), tmp_path)["segmentation"] == {
        "PRELABEL_CLICK_MODEL": "tiny2"}
