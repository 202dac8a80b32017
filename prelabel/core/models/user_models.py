"""The user model repository: a user's own Ultralytics ONNX exports, each a Triton model
folder served beside model_repository/ (`prelabel models add/list/remove`), and SAM-interface
encoder + decoder pairs for click-to-segment (`models add --family sam`, two folders: see
`add_sam_model`).

Where: PRELABEL_USER_MODELS_DIR, default $XDG_DATA_HOME/prelabel/models
(~/.local/share/prelabel/models): outside the source tree, kept across cache clean-ups.
A model folder is

    <NAME>/1/model.py        the one entry point (services.modelkit.entrypoint)
    <NAME>/1/model.onnx      the user's file, copied
    <NAME>/config.pbtxt      CPU profile: python backend + onnxruntime (CPU)
    <NAME>/configs/gpu.pbtxt GPU profile: the same python backend and code, onnxruntime's
                             CUDA execution provider (one implementation, the same decoder
                             and provenance on both profiles; onnxruntime-gpu must be in the
                             Triton image)
    <NAME>/prelabel-model.json  what `list` shows

The configs name services.modelkit.ultralytics_model:UltralyticsModel with the file's
SHA-256 (refused at load if the file changes), its layout, its class names (label_map
"custom": every output names categories from them) and the license given. Standard
library only: the CLI writes these folders without the server side installed.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from prelabel.core.models.sam_interface import FAMILIES, read_sam_pair
from prelabel.core.models.store import sha256_file
from prelabel.core.models.ultralytics_layouts import UltralyticsLayout, read_layout

IMPLEMENTATION = "services.modelkit.ultralytics_model:UltralyticsModel"
HEAD_OF_TASK = {"detect": "detector", "segment": "promptable_masks", "pose": "keypoints"}
MODEL_FILE = "model.onnx"
INFO_FILE = "prelabel-model.json"
#: The models of model_repository/: Triton needs names unique across its repositories
#: (tests/unit/test_user_models.py keeps this list equal to the folder's).
BUILT_IN_MODELS = ("coco_detector", "face_detector", "keypointer", "segmenter")
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
ROWS = {"detect": 100, "segment": 32, "pose": 32}  # output rows (N) per task
PROMPTS = 32  # prompt rows (P) of the prompted heads
MASK_GRID = 64  # M: mask probabilities over each row's box
SAM_IMPLEMENTATION = "services.modelkit.sam_model:{part}"
#: A SAM pair's two Triton models: NAME_encoder and NAME_decoder.
SAM_PARTS = {"encoder": ("SamEncoder", "image_encoder"), "decoder": ("SamDecoder", "mask_decoder")}
#: Per family (`models add --family`): each part's implementation class and head.
SAM_FAMILY_PARTS = {"sam": SAM_PARTS,
                    "sam2": {"encoder": ("Sam2Encoder", "sam2_image_encoder"),
                             "decoder": ("Sam2Decoder", "sam2_mask_decoder")}}
SAM2_FEATURES = ['{ name: "HIGH_RES_FEATS_0" data_type: TYPE_FP32 dims: [ 32, 256, 256 ] }',
                 '{ name: "HIGH_RES_FEATS_1" data_type: TYPE_FP32 dims: [ 64, 128, 128 ] }']
SAM_POINT_ROWS = 66  # Q: the decoder model's point rows (64 clicks + a box's two corners)
WEIGHTS_KINDS = ("pretrained", "custom", "random")  # services.modelkit.weights' kinds


class UserModelError(ValueError):
    """A model cannot be added or removed (the message says why)."""


def user_models_dir() -> Path:
    configured = os.environ.get("PRELABEL_USER_MODELS_DIR")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "prelabel" / "models"


@dataclass(frozen=True)
class UserModel:
    name: str
    task: str
    family: str
    head: str
    names: tuple[str, ...]
    sha256: str
    license: str
    source_file: str  # the path it was added from
    weights: str = "custom"  # the provenance's weights kind (WEIGHTS_KINDS)
    pair: str = ""  # a SAM pair's name (both its folders carry it); "" for a single model

    @classmethod
    def read(cls, folder: Path) -> UserModel:
        data = json.loads((folder / INFO_FILE).read_text())
        return cls(**{**data, "names": tuple(data["names"])})


def _string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a pbtxt string literal (JSON's escapes are pbtxt's)


def model_config(name: str, layout: UltralyticsLayout, sha256: str, license: str, gpu: bool) -> str:
    """The config.pbtxt (or configs/gpu.pbtxt) text of a user model."""
    task = layout.task
    size = max(layout.input_height, layout.input_width)  # IMAGE is square; the model re-fits it
    n = ROWS[task]
    inputs = [f'{{ name: "IMAGE" data_type: TYPE_UINT8 dims: [ {size}, {size}, 3 ] }}']
    outputs = [f'{{ name: "BOXES" data_type: TYPE_FP32 dims: [ {n}, 4 ] }}',
               f'{{ name: "SCORES" data_type: TYPE_FP32 dims: [ {n} ] }}',
               f'{{ name: "LABELS" data_type: TYPE_INT32 dims: [ {n} ] }}']
    if task != "detect":
        inputs.append(f'{{ name: "PROMPT_BOXES" data_type: TYPE_FP32 dims: [ {PROMPTS}, 4 ] }}')
        if task == "segment":
            inputs.append(f'{{ name: "PROMPT_LABELS" data_type: TYPE_INT32 dims: [ {PROMPTS} ] }}')
        inputs.append('{ name: "PROMPT_COUNT" data_type: TYPE_INT32 dims: [ 1 ] }')
    if task == "segment":
        outputs.append(f'{{ name: "MASKS" data_type: TYPE_FP32 dims: [ {n}, {MASK_GRID}, {MASK_GRID} ] }}')
    if task == "pose":
        assert layout.kpt_shape is not None
        k = layout.kpt_shape[0]
        outputs.append(f'{{ name: "KEYPOINTS" data_type: TYPE_FP32 dims: [ {n}, {k}, 2 ] }}')
        outputs.append(f'{{ name: "KEYPOINT_SCORES" data_type: TYPE_FP32 dims: [ {n}, {k} ] }}')
    outputs += ['{ name: "COUNT" data_type: TYPE_INT32 dims: [ 1 ] }',
                '{ name: "PROVENANCE" data_type: TYPE_STRING dims: [ 1 ] }']
    parameters = {"head": HEAD_OF_TASK[task], "implementation": IMPLEMENTATION, "label_map": "custom",
                  "names": json.dumps(list(layout.names), ensure_ascii=False), "onnx_file": f"1/{MODEL_FILE}",
                  "sha256": sha256, "family": layout.family, "task": task, "license": license,
                  "num_threads": "0" if gpu else "1"}
    batching = ("A dynamic batch axis: a Triton batch runs in one call." if layout.dynamic_batch
                else "A batch-1 graph: a Triton batch runs item by item.")
    lines = [
        f"# {name}: a user's Ultralytics {layout.family} {task} export ({len(layout.names)} classes), "
        f"{'GPU' if gpu else 'CPU'} profile.",
        "# Written by `prelabel models add`; re-add the file rather than editing the sha256.",
        f"name: {_string(name)}",
        'backend: "python"',
        f"max_batch_size: {16 if gpu else 8}",
        "input [\n  " + ",\n  ".join(inputs) + "\n]",
        "output [\n  " + ",\n  ".join(outputs) + "\n]",
        f"# {batching}",
        "dynamic_batching {\n  max_queue_delay_microseconds: 5000\n  priority_levels: 2\n"
        "  default_priority_level: 1\n  default_queue_policy {\n    max_queue_size: 64\n"
        "    timeout_action: REJECT\n    default_timeout_microseconds: 30000000\n"
        "    allow_timeout_override: true\n  }\n}",
        f"instance_group [ {{ count: 1 kind: {'KIND_GPU' if gpu else 'KIND_CPU'} }} ]",
    ]
    lines += [f"parameters {{ key: {_string(k)} value {{ string_value: {_string(v)} }} }}"
              for k, v in parameters.items()]
    return "\n".join(lines) + "\n"


ENTRY_POINT = '"""Triton entry point of a user model (see prelabel/core/models/user_models.py)."""\n' \
              "from services.modelkit.entrypoint import TritonPythonModel  # noqa: F401\n"


def add_model(name: str, file: Path, *, task: str | None = None, names: Sequence[str] | None = None,
              license: str = "", input_size: int | None = None, repository: Path | None = None) -> UserModel:
    """Check `file` (an Ultralytics ONNX export) and write its model folder into the user
    model repository. NotOnnxError / LayoutError / UserModelError (all ValueError) say why not."""
    repository = repository or user_models_dir()
    if not NAME_PATTERN.match(name):
        raise UserModelError(f"model name {name!r}: lowercase letters, digits and _, starting with a letter")
    if name in BUILT_IN_MODELS:
        raise UserModelError(f"{name} is a built-in model's name (model_repository/): choose another")
    if (repository / name).exists():
        raise UserModelError(f"{name} is already in {repository}: remove it first")
    layout = read_layout(file, task=task, names=names, input_size=input_size)
    if layout.batch_size not in (None, 1):
        raise UserModelError(f"the graph's batch is fixed at {layout.batch_size}: export with batch 1 or dynamic")
    license = license or layout.license
    part = repository / f".{name}.part"
    shutil.rmtree(part, ignore_errors=True)
    (part / "1").mkdir(parents=True)
    (part / "configs").mkdir()
    shutil.copyfile(file, part / "1" / MODEL_FILE)
    sha256 = sha256_file(part / "1" / MODEL_FILE)
    (part / "1" / "model.py").write_text(ENTRY_POINT)
    (part / "config.pbtxt").write_text(model_config(name, layout, sha256, license, gpu=False))
    (part / "configs" / "gpu.pbtxt").write_text(model_config(name, layout, sha256, license, gpu=True))
    model = UserModel(name, layout.task, layout.family, HEAD_OF_TASK[layout.task], layout.names, sha256, license,
                      str(Path(file).resolve()))
    (part / INFO_FILE).write_text(json.dumps(asdict(model), indent=1, ensure_ascii=False) + "\n")
    part.rename(repository / name)
    return model


def sam_model_name(pair: str, part: str) -> str:
    """The Triton model of one part ("encoder" or "decoder") of the SAM pair `pair`."""
    return f"{pair}_{part}"


def sam_model_config(pair: str, part: str, sha256: str, license: str, weights: str, gpu: bool,
                     family: str = "sam") -> str:
    """The config.pbtxt (or configs/gpu.pbtxt) text of one part of a SAM (or SAM 2) pair."""
    name = sam_model_name(pair, part)
    sam2 = family == "sam2"  # SAM 2: the encoder's two feature maps more, no IMAGE_VALID (no padding)
    if part == "encoder":
        inputs = ['{ name: "IMAGE" data_type: TYPE_UINT8 dims: [ 1024, 1024, 3 ] }']
        if not sam2:
            inputs.append('{ name: "IMAGE_VALID" data_type: TYPE_INT32 dims: [ 2 ] }')
        outputs = ['{ name: "IMAGE_EMBEDDINGS" data_type: TYPE_FP32 dims: [ 256, 64, 64 ] }']
        outputs += SAM2_FEATURES if sam2 else []
    else:
        q = SAM_POINT_ROWS
        inputs = ['{ name: "IMAGE_EMBEDDINGS" data_type: TYPE_FP32 dims: [ 256, 64, 64 ] }',
                  *(SAM2_FEATURES if sam2 else []),
                  f'{{ name: "PROMPT_POINTS" data_type: TYPE_FP32 dims: [ 1, {q}, 2 ] }}',
                  f'{{ name: "PROMPT_POINT_SIGNS" data_type: TYPE_INT32 dims: [ 1, {q} ] }}',
                  '{ name: "PROMPT_MASKS" data_type: TYPE_FP32 dims: [ 1, 256, 256 ] }',
                  '{ name: "PROMPT_MASK_GIVEN" data_type: TYPE_INT32 dims: [ 1 ] }',
                  '{ name: "PROMPT_COUNT" data_type: TYPE_INT32 dims: [ 1 ] }']
        outputs = ['{ name: "LOW_RES_MASKS" data_type: TYPE_FP32 dims: [ 1, 4, 256, 256 ] }',
                   '{ name: "PREDICTED_IOUS" data_type: TYPE_FP32 dims: [ 1, 4 ] }']
    outputs.append('{ name: "PROVENANCE" data_type: TYPE_STRING dims: [ 1 ] }')
    implementation, head = SAM_FAMILY_PARTS[family][part]
    parameters = {"head": head, "implementation": SAM_IMPLEMENTATION.format(part=implementation),
                  "onnx_file": f"1/{MODEL_FILE}", "sha256": sha256, "pair": pair, "weights": weights,
                  "license": license, "num_threads": "0" if gpu else "1"}
    lines = [
        f"# {name}: the {part} of a user's {FAMILIES[family].title}-interface ONNX pair {pair!r}, "
        f"{'GPU' if gpu else 'CPU'} profile.",
        f"# Written by `prelabel models add --family {family}`; re-add the files rather than editing the sha256.",
        f"name: {_string(name)}",
        'backend: "python"',
        "max_batch_size: 1",  # SAM's exports take one image / one prompt set
        "input [\n  " + ",\n  ".join(inputs) + "\n]",
        "output [\n  " + ",\n  ".join(outputs) + "\n]",
        "dynamic_batching {\n  priority_levels: 2\n  default_priority_level: 1\n  default_queue_policy {\n"
        "    max_queue_size: 64\n    timeout_action: REJECT\n    default_timeout_microseconds: 30000000\n"
        "    allow_timeout_override: true\n  }\n}",
        f"instance_group [ {{ count: 1 kind: {'KIND_GPU' if gpu else 'KIND_CPU'} }} ]",
    ]
    lines += [f"parameters {{ key: {_string(k)} value {{ string_value: {_string(v)} }} }}"
              for k, v in parameters.items()]
    return "\n".join(lines) + "\n"


def add_sam_model(name: str, encoder: Path, decoder: Path, *, license: str = "", weights: str = "custom",
                  repository: Path | None = None, family: str = "sam") -> list[UserModel]:
    """Check a SAM-interface (or, `family` "sam2", SAM 2-interface) encoder + decoder pair
    (prelabel.core.models.sam_interface) and
    write its two model folders, NAME_encoder and NAME_decoder, into the user model
    repository. Two Triton models, not one: the encoder runs once per image and the decoder
    once per click, so each has its own queue and instances (a click on a held image never
    waits behind another image's encoding) and Triton counts each one's inferences.
    NotOnnxError / SamInterfaceError / UserModelError (all ValueError) say why not."""
    repository = repository or user_models_dir()
    if not NAME_PATTERN.match(name) or len(name) > 56:
        raise UserModelError(f"model name {name!r}: lowercase letters, digits and _, starting with a letter, "
                             "at most 56 characters (_encoder / _decoder are added)")
    if weights not in WEIGHTS_KINDS:
        raise UserModelError(f"weights {weights!r}: expected one of {list(WEIGHTS_KINDS)}")
    if family not in FAMILIES:
        raise UserModelError(f"family {family!r}: expected one of {list(FAMILIES)}")
    for part in SAM_PARTS:
        folder = sam_model_name(name, part)
        if folder in BUILT_IN_MODELS or (repository / folder).exists():
            raise UserModelError(f"{folder} is already in {repository} or built in: remove it or choose another name")
    pair = read_sam_pair(encoder, decoder, FAMILIES[family])
    added, written = [], []
    for part, source in (("encoder", pair.encoder), ("decoder", pair.decoder)):
        folder = sam_model_name(name, part)
        part_dir = repository / f".{folder}.part"
        shutil.rmtree(part_dir, ignore_errors=True)
        (part_dir / "1").mkdir(parents=True)
        (part_dir / "configs").mkdir()
        shutil.copyfile(source, part_dir / "1" / MODEL_FILE)
        sha256 = sha256_file(part_dir / "1" / MODEL_FILE)
        (part_dir / "1" / "model.py").write_text(ENTRY_POINT)
        for config, gpu in ((part_dir / "config.pbtxt", False), (part_dir / "configs" / "gpu.pbtxt", True)):
            config.write_text(sam_model_config(name, part, sha256, license, weights, gpu, family))
        model = UserModel(folder, part, family, SAM_FAMILY_PARTS[family][part][1], (), sha256, license,
                          str(Path(source).resolve()), weights=weights, pair=name)
        (part_dir / INFO_FILE).write_text(json.dumps(asdict(model), indent=1, ensure_ascii=False) + "\n")
        written.append(part_dir)
        added.append(model)
    for part_dir, model in zip(written, added, strict=True):  # both written before either is served
        part_dir.rename(repository / model.name)
    return added


def list_user_models(repository: Path | None = None) -> list[UserModel]:
    repository = repository or user_models_dir()
    if not repository.is_dir():
        return []
    return [UserModel.read(f) for f in sorted(repository.iterdir()) if (f / INFO_FILE).is_file()]


def remove_model(name: str, repository: Path | None = None) -> None:
    """Remove the user model `name`, or both folders of the SAM pair `name`."""
    repository = repository or user_models_dir()
    pair = [m.name for m in list_user_models(repository) if m.pair and m.pair == name]
    folders = [repository / n for n in pair] or [repository / name]
    if not NAME_PATTERN.match(name) or not all((f / INFO_FILE).is_file() for f in folders):
        raise UserModelError(f"no user model {name!r} in {repository}")
    for folder in folders:
        shutil.rmtree(folder)
