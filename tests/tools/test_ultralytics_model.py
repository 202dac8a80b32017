"""A user's Ultralytics export served through a contract head
(services/modelkit/ultralytics_model.py) from the folder `prelabel models add` writes
(prelabel/core/models/user_models.py), run in-process as Triton's Python backend would.

The exports are the random-initialised ones of test_ultralytics_layouts (made offline in the
onnx-export tool venv, cached). The model's rows must be the family decoder's on the model's
own input (the IMAGE the services send, re-fitted); the decoder itself is checked against
Ultralytics' predictor in test_ultralytics_layouts."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
import yaml
from google.protobuf import json_format, text_format
from pycocotools.coco import COCO
from tritonclient.grpc import model_config_pb2

from prelabel.core.labels import custom_categories
from prelabel.core.models.onnx_graph import NotOnnxError
from prelabel.core.models.store import ModelFileError
from prelabel.core.models.ultralytics_layouts import LayoutError
from prelabel.core.models.user_models import UserModelError, add_model, list_user_models, remove_model
from services.common.letterbox import boxes_to_source, letterbox_for, letterbox_image
from services.modelkit.contract import check_config
from services.modelkit.entrypoint import implementation_class
from services.modelkit.families.ultralytics_decode import decode, fit_to_input, to_input
from tests.photos import photo
from tests.tools.test_ultralytics_layouts import RANDOM_EXPORTS, TOOL, export_cached, exports_dir
from tests.unit.triton_models import run

pytestmark = [pytest.mark.tools, pytest.mark.timeout(900)]

EXPORTS = {e.name: e for e in RANDOM_EXPORTS}
PHOTOS = ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg")


@pytest.fixture(scope="module")
def export(run_probe):
    return lambda name: export_cached(run_probe, name, EXPORTS[name].spec())


@pytest.fixture(scope="module")
def damage_export(run_probe, tool_python):
    """A random-initialised YOLO11n detect export of 2 classes (Ultralytics' yolo11.yaml with
    nc: 2; the file name says scale n), its metadata naming them class0, class1."""
    venv = tool_python(TOOL).parent.parent
    [base] = venv.glob("lib/python*/site-packages/ultralytics/cfg/models/11/yolo11.yaml")
    cfg = exports_dir() / "yolo11n-2classes.yaml"
    text = re.sub(r"(?m)^nc: \d+", "nc: 2", base.read_text())
    if not cfg.exists() or cfg.read_text() != text:
        cfg.write_text(text)
    return export_cached(run_probe, "damage", {**EXPORTS["detect"].spec(), "model": str(cfg)})


def config_of(folder, profile: str = "cpu") -> dict:
    path = folder / "config.pbtxt" if profile == "cpu" else folder / "configs" / f"{profile}.pbtxt"
    config = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    return json_format.MessageToDict(config, preserving_proto_field_name=True)


def served(folder):
    config = config_of(folder)
    model = implementation_class(config)()
    model.initialize({"model_config": json.dumps(config), "model_name": folder.name, "model_instance_kind": "CPU",
                      "model_repository": str(folder)})
    return model


def image_input(name: str, size: int) -> np.ndarray:
    """The IMAGE the services send: letterboxed to size x size (pad 0)."""
    img = photo(name).convert("RGB")
    return letterbox_image(img, letterbox_for(img.width, img.height, size, size))


def reference_rows(model, image: np.ndarray):
    """The family decoder on the model's own input: detections in IMAGE pixels."""
    fitted = fit_to_input(image, model.layout)
    raw = model.session.run(None, {model.layout.input_name: to_input(fitted.pixels[None], model.layout)})
    outputs = {o.name: r[0] for o, r in zip(model.session.get_outputs(), raw, strict=True)}
    det = decode(model.layout, outputs, score_floor=model.params_.box_score_floor, iou=model.params_.nms_iou,
                 max_det=model.rows)
    return det, boxes_to_source(det.boxes, fitted.geometry)


def test_detect_export_serves_the_decoders_rows_with_custom_names_and_provenance(export, tmp_path):
    model = add_model("parts", export("detect"), license="MIT", repository=tmp_path)
    assert model.head == "detector" and len(model.names) == 80 and model.license == "MIT"
    assert [m.name for m in list_user_models(tmp_path)] == ["parts"]
    for profile in ("cpu", "gpu"):
        assert check_config(config_of(tmp_path / "parts", profile)).name == "detector"
    served_model = served(tmp_path / "parts")
    images = np.stack([image_input(p, 640) for p in PHOTOS])
    out = run(served_model, {"IMAGE": images})
    for i, image in enumerate(images):
        det, boxes = reference_rows(served_model, image)
        n = int(out["COUNT"][i, 0])
        assert n == min(len(det), 100) and n > 0
        np.testing.assert_allclose(out["BOXES"][i, :n], boxes[:n], atol=1e-3)
        np.testing.assert_array_equal(out["LABELS"][i, :n], det.class_ids[:n] + 1)
        np.testing.assert_allclose(out["SCORES"][i, :n], det.scores[:n])
    info = json.loads(served_model._provenance)
    assert (info["kind"], info["sha256"], info["license"]) == ("custom", model.sha256, "MIT")
    remove_model("parts", tmp_path)
    assert list_user_models(tmp_path) == []


def test_custom_names_travel_in_the_config_and_a_wrong_count_is_refused(export, tmp_path):
    with pytest.raises(LayoutError, match="2 names given, the file's metadata has 80"):
        add_model("damage", export("detect"), names=["scratch", "dent"], repository=tmp_path)
    path = export("rtdetr")  # final rows: names are the caller's to give
    model = add_model("damage", path, names=[f"n{i}" for i in range(80)], repository=tmp_path)
    config = config_of(tmp_path / "damage")
    assert custom_categories(config["parameters"]["names"]["string_value"])[1] == "n0"
    assert model.family == "rtdetr"


def test_dynamic_batch_of_eight_equals_eight_batches_of_one(export, tmp_path):
    add_model("dyn", export("dynamic-detect"), repository=tmp_path)
    model = served(tmp_path / "dyn")
    assert model.layout.dynamic_batch
    images = np.stack([image_input(PHOTOS[i % len(PHOTOS)], 640) for i in range(8)])
    batch = run(model, {"IMAGE": images})
    for i in range(8):
        one = run(model, {"IMAGE": images[i:i + 1]})
        for name, value in one.items():
            np.testing.assert_allclose(batch[name][i], value[0], atol=1e-4, err_msg=name)


def test_segment_export_answers_automatic_and_one_row_per_prompt(export, tmp_path):
    add_model("seg", export("segment"), repository=tmp_path)
    model = served(tmp_path / "seg")
    image = image_input("astronaut.png", 640)[None]
    none = np.zeros((1, 32, 4), np.float32)
    auto = run(model, {"IMAGE": image, "PROMPT_BOXES": none, "PROMPT_LABELS": np.zeros((1, 32), np.int32),
                       "PROMPT_COUNT": np.zeros((1, 1), np.int32)})
    n = int(auto["COUNT"][0, 0])
    assert n > 0 and auto["MASKS"].shape == (1, 32, 64, 64) and (auto["MASKS"][0, :n].max(axis=(1, 2)) > 0.5).all()
    prompts = none.copy()
    prompts[0, 0] = auto["BOXES"][0, 0] + [1, 1, -1, -1]  # close to instance 0
    prompts[0, 1] = [0, 0, 2, 2]  # overlaps nothing
    asked = run(model, {"IMAGE": image, "PROMPT_BOXES": prompts, "PROMPT_LABELS": np.zeros((1, 32), np.int32),
                        "PROMPT_COUNT": np.array([[2]], np.int32)})
    assert int(asked["COUNT"][0, 0]) == 2
    np.testing.assert_allclose(asked["BOXES"][0, 0], auto["BOXES"][0, 0])
    np.testing.assert_allclose(asked["MASKS"][0, 0], auto["MASKS"][0, 0])
    assert asked["SCORES"][0, 1] == 0 and asked["MASKS"][0, 1].max() == 0


def test_pose_export_serves_its_keypoints(export, tmp_path):
    add_model("pose", export("pose"), repository=tmp_path)
    model = served(tmp_path / "pose")
    image = image_input("astronaut.png", 640)
    out = run(model, {"IMAGE": image[None], "PROMPT_BOXES": np.zeros((1, 32, 4), np.float32),
                      "PROMPT_COUNT": np.zeros((1, 1), np.int32)})
    det, _ = reference_rows(model, image)
    n = int(out["COUNT"][0, 0])
    assert out["KEYPOINTS"].shape == (1, 32, 17, 2) and n == min(len(det), 32) > 0
    assert det.keypoints is not None and det.keypoint_scores is not None
    np.testing.assert_allclose(out["KEYPOINTS"][0, :n], det.keypoints[:n], atol=1e-3)
    np.testing.assert_allclose(out["KEYPOINT_SCORES"][0, :n], det.keypoint_scores[:n], atol=1e-6)


def test_add_refuses_what_it_cannot_serve_and_load_refuses_a_changed_file(export, tmp_path):
    text = tmp_path / "notes.onnx"
    text.write_text("not a model")
    with pytest.raises(NotOnnxError):
        add_model("notes", text, repository=tmp_path)
    with pytest.raises(UserModelError, match="model name"):
        add_model("Bad Name", export("detect"), repository=tmp_path)
    add_model("det", export("detect"), repository=tmp_path)
    with pytest.raises(UserModelError, match="already"):
        add_model("det", export("detect"), repository=tmp_path)
    with (tmp_path / "det" / "1" / "model.onnx").open("ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelFileError, match="changed after it was added"):
        served(tmp_path / "det")


def test_models_cli_adds_lists_and_removes_a_custom_vocabulary_export(export, damage_export, tmp_path, capsys):
    from prelabel.cli import main

    names = tmp_path / "names.yaml"
    names.write_text("names:\n  0: scratch\n  1: dent\n")
    repo = tmp_path / "user-models"
    # names disagreeing with the output width (80 classes) are refused, naming both
    assert main(["models", "add", "damage", str(export("detect")), "--names", str(names),
                 "--user-models-dir", str(repo)]) == 1
    assert "2 names given, the file's metadata has 80" in capsys.readouterr().err
    assert main(["models", "add", "damage", str(damage_export), "--names", str(names), "--license", "Apache-2.0",
                 "--user-models-dir", str(repo)]) == 0
    assert main(["models", "list", "--user-models-dir", str(repo)]) == 0
    listed = capsys.readouterr().out
    assert "damage" in listed and "2: scratch, dent" in listed and "Apache-2.0" in listed
    config = config_of(repo / "damage")
    assert custom_categories(config["parameters"]["names"]["string_value"]) == {1: "scratch", 2: "dent"}
    out = run(served(repo / "damage"), {"IMAGE": image_input("coffee.png", 640)[None]})
    n = int(out["COUNT"][0, 0])
    assert n > 0 and set(out["LABELS"][0, :n].tolist()) <= {1, 2}
    assert main(["models", "remove", "damage", "--user-models-dir", str(repo)]) == 0
    assert not (repo / "damage").exists()
    assert main(["models", "remove", "damage", "--user-models-dir", str(repo)]) == 1


def test_real_triton_serves_an_added_model_from_the_user_repository_beside_model_repository(damage_export,
                                                                                             tmp_path):
    import tritonclient.grpc as grpcclient

    from services.embedded_triton.settings import TritonSettings
    from tests.triton_server import running_triton

    repo = tmp_path / "user-models"
    add_model("damage", damage_export, names=["scratch", "dent"], license="Apache-2.0", repository=repo)
    settings = TritonSettings(grpc_port=0, http_port=0, metrics_port=0, models=["damage"], user_model_repository=repo)
    with running_triton(settings, tmp_path / "tritonserver.log") as server:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        config = client.get_model_config("damage", as_json=True)["config"]
        assert config["parameters"]["label_map"]["string_value"] == "custom"
        image = grpcclient.InferInput("IMAGE", [1, 640, 640, 3], "UINT8")
        image.set_data_from_numpy(image_input("coffee.png", 640)[None])
        result = client.infer("damage", [image])
        n = int(result.as_numpy("COUNT")[0, 0])
        assert n > 0 and set(result.as_numpy("LABELS")[0, :n].tolist()) <= {1, 2}
        info = json.loads(result.as_numpy("PROVENANCE")[0, 0])
        assert (info["kind"], info["license"]) == ("custom", "Apache-2.0")
        assert info["sha256"] == list_user_models(repo)[0].sha256


def test_added_model_labels_end_to_end_through_the_suite_with_its_names_and_provenance(damage_export, tmp_path):
    """`prelabel models add` -> the devstack (real Triton, services, router) with the model
    chosen for the detect task -> `prelabel annotate` -> COCO / YOLO / Label Studio files
    naming scratch and dent, the journal carrying WEIGHTS_CUSTOM and the file's SHA-256."""
    import asyncio
    import subprocess
    import sys

    from services.devstack import DevstackSettings, Stack
    from services.embedded_triton.launcher import free_port
    from services.embedded_triton.settings import TritonSettings
    from tests.photos import photo_path

    repo = tmp_path / "user-models"
    names = tmp_path / "names.yaml"
    names.write_text("- scratch\n- dent\n")
    from prelabel.cli import main
    assert main(["models", "add", "damage", str(damage_export), "--names", str(names), "--license", "Apache-2.0",
                 "--user-models-dir", str(repo)]) == 0
    sha256 = list_user_models(repo)[0].sha256
    dev = DevstackSettings(router_port=free_port(), detection_port=free_port(), segmentation_port=free_port(),
                           keypoints_port=free_port(), metrics_base_port=0, run_dir=tmp_path / "run",
                           detect_model="damage")
    stack = Stack(dev, TritonSettings(grpc_port=0, http_port=0, metrics_port=0, user_model_repository=repo))
    try:
        stack.start()
        asyncio.run(stack.wait_serving(600))
        out = tmp_path / "out"
        done = subprocess.run([sys.executable, "-m", "prelabel.cli", "annotate", str(photo_path("coffee.png")),
                               str(photo_path("chelsea.png")), "--out", str(out), "--tasks", "detect",
                               "--router", f"127.0.0.1:{dev.router_port}", "--score-threshold", "0.01",
                               "--formats", "coco,yolo,labelstudio", "--no-progress"],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
    finally:
        stack.stop()
    [coco_path] = [p for p in out.rglob("*.json") if "coco" in p.parts]
    coco = json.loads(coco_path.read_text())
    loaded = COCO(str(coco_path))  # pycocotools, as COCO tools load it
    assert {loaded.cats[a["category_id"]]["name"] for a in loaded.anns.values()} <= {"scratch", "dent"}
    cvat = json.loads((out / "cvat_labels.json").read_text())
    assert {"scratch", "dent"} & {label["name"] for label in cvat}
    # COCO files list the 80 COCO categories too (formats/coco.py: the same list in every
    # shard); the custom names are added with their stable ids, and every annotation has one.
    custom_ids = {c["id"] for c in coco["categories"] if c["name"] in ("scratch", "dent")}
    assert custom_ids and coco["annotations"]
    assert {a["category_id"] for a in coco["annotations"]} <= custom_ids
    [data_yaml] = list(out.rglob("data.yaml"))
    yolo_names = yaml.safe_load(data_yaml.read_text())["names"]
    used = {int(line.split()[0]) for p in data_yaml.parent.rglob("labels/**/*.txt") for line in p.read_text().splitlines()}
    assert used and {yolo_names[i] for i in used} <= {"scratch", "dent"}
    ls_texts = "".join(p.read_text() for p in out.rglob("*") if p.is_file() and "labelstudio" in str(p))
    assert "scratch" in ls_texts or "dent" in ls_texts
    journal = "".join(p.read_text(errors="replace") for p in out.rglob("*journal*") if p.is_file())
    assert sha256 in journal and "WEIGHTS_CUSTOM" in journal and "Apache-2.0" in journal
