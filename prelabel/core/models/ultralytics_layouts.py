"""Which Ultralytics ONNX export a file is: its layout, read from the graph's edges and the
metadata_props Ultralytics writes (task, names, imgsz, kpt_shape, head, end2end, args).

Layouts (Ultralytics 8.4 exports; `images` [B, 3, H, W] RGB/255 float in, B fixed or
dynamic):
- `yolo` (v5u/v8/v11/v26 heads exported as they are, `nms` unset): `output0`
  [B, 4 + nc + extra, A] -- per anchor cx, cy, w, h (input pixels), nc class scores
  (sigmoid applied), then `extra` channels: 32 mask coefficients (segment; prototypes in
  `output1` [B, 32, H/4, W/4]) or K x 3 keypoints x, y, visibility (pose). Needs NMS.
- `end2end` (a one-to-one head exported with `nms=False`: YOLO26, YOLOv10; or NMS baked in
  with `nms=True`): `output0` [B, max_det, 6 + extra] -- x1, y1, x2, y2, score, class, then
  the same extras. Rows are final (zero rows pad); only a score floor applies.
- `rtdetr` (RT-DETR's decoder): `output0` [B, 300, 6] -- cx, cy, w, h normalised to 0..1,
  score, class; the image is stretched to the input, not letterboxed. (Older Ultralytics
  versions wrote [B, 300, 4 + nc], a sigmoid score per class: not read here, as nothing here
  produces one to test against.)

Without metadata a file can still be described by the caller (task, names, family, input
size); whatever is known is checked against the graph, and a file that matches no layout is
refused with what was expected and what was found.
"""
from __future__ import annotations

import ast
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prelabel.core.models.onnx_graph import OnnxGraph, TensorInfo, read_onnx_graph

TASKS = ("detect", "segment", "pose")
FAMILIES = ("yolo", "end2end", "rtdetr")
BOX_CHANNELS = 4  # cx, cy, w, h (yolo) / x1, y1, x2, y2 (end2end)
ROW_FIXED = 6  # box, score, class: the start of an end2end / RT-DETR row
FLOAT_INPUTS = ("float32", "float16")


class LayoutError(ValueError):
    """The file matches no known layout, or what the caller says about it disagrees with it."""


@dataclass(frozen=True)
class UltralyticsLayout:
    family: str  # FAMILIES
    task: str  # TASKS
    names: tuple[str, ...]  # class names, index = class id
    input_name: str
    input_dtype: str  # "float32" or "float16"
    input_height: int
    input_width: int
    batch_size: int | None  # None: dynamic batch axis
    output_name: str  # detections (raw or final rows)
    protos_name: str | None  # segment: the mask prototypes
    mask_dim: int  # segment: number of prototypes (mask coefficients per row), else 0
    kpt_shape: tuple[int, int] | None  # pose: (keypoints, 2 or 3 values each)
    license: str  # metadata's, "" when none

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def dynamic_batch(self) -> bool:
        return self.batch_size is None

    @property
    def stretch(self) -> bool:
        """RT-DETR is fed the image resized to the input without keeping its aspect ratio."""
        return self.family == "rtdetr"


def _literal(metadata: dict[str, str], key: str) -> Any:
    if key not in metadata:
        return None
    try:
        return ast.literal_eval(metadata[key])
    except (ValueError, SyntaxError) as e:
        raise LayoutError(f"metadata {key!r} is not a Python literal: {metadata[key][:80]!r}") from e


def _names(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, list | tuple):
        return tuple(str(v) for v in value)
    if isinstance(value, dict):
        by_id = {int(k): str(v) for k, v in value.items()}
        if sorted(by_id) != list(range(len(by_id))):
            raise LayoutError(f"metadata 'names' ids are not 0..{len(by_id) - 1}: {sorted(by_id)[:10]}...")
        return tuple(by_id[i] for i in range(len(by_id)))
    raise LayoutError(f"metadata 'names' is a {type(value).__name__}, expected a dict or list")


def _pair(value: Any, what: str) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, int):
        return value, value
    if isinstance(value, list | tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return int(value[0]), int(value[1])
    raise LayoutError(f"{what} must be N or [H, W], got {value!r}")


def _size(dim: Any) -> int | None:
    return dim if isinstance(dim, int) and dim > 0 else None


@dataclass(frozen=True)
class _Said:
    """What the file's metadata says, or the caller, each None where silent."""
    task: str | None = None
    family: str | None = None
    names: tuple[str, ...] | None = None
    kpt_shape: tuple[int, int] | None = None
    input_size: tuple[int, int] | None = None


def _from_metadata(meta: dict[str, str]) -> _Said:
    args = _literal(meta, "args")
    task = meta.get("task")
    if meta.get("head") == "RTDETRDecoder":
        family: str | None = "rtdetr"
    elif _literal(meta, "end2end") or (isinstance(args, dict) and args.get("nms")):
        family = "end2end"  # a one-to-one head, or NMS baked in (Ultralytics reads both alike)
    else:
        family = "yolo" if task is not None else None
    return _Said(task, family, _names(_literal(meta, "names")), _pair(_literal(meta, "kpt_shape"), "metadata 'kpt_shape'"),
                 _pair(_literal(meta, "imgsz"), "metadata 'imgsz'"))


def _agreed(file: _Said, caller: _Said) -> _Said:
    """The caller's word where the file is silent; a disagreement is refused."""
    for what, ours, theirs in (("task", file.task, caller.task), ("family", file.family, caller.family)):
        if ours is not None and theirs is not None and ours != theirs:
            raise LayoutError(f"the file is a {ours!r} export by its metadata ({what}), not {theirs!r}")
    if file.names is not None and caller.names is not None and len(file.names) != len(caller.names):
        raise LayoutError(f"{len(caller.names)} names given, the file's metadata has {len(file.names)}")
    if file.kpt_shape is not None and caller.kpt_shape is not None and file.kpt_shape != caller.kpt_shape:
        raise LayoutError(f"kpt_shape {list(caller.kpt_shape)} given, the file's metadata has {list(file.kpt_shape)}")
    said = _Said(caller.task or file.task, caller.family or file.family, caller.names or file.names,
                 caller.kpt_shape or file.kpt_shape, caller.input_size or file.input_size)
    if said.task is not None and said.task not in TASKS:
        raise LayoutError(f"task {said.task!r} is not one of {list(TASKS)}")
    if said.family is not None and said.family not in FAMILIES:
        raise LayoutError(f"family {said.family!r} is not one of {list(FAMILIES)}")
    if said.kpt_shape is not None and (said.kpt_shape[1] not in (2, 3) or said.kpt_shape[0] < 1):
        raise LayoutError(f"kpt_shape {list(said.kpt_shape)}: expected (K, 2) or (K, 3)")
    return said


def _describe(tensors: tuple[TensorInfo, ...]) -> str:
    return ", ".join(f"{t.name} {t.elem_type} {list(t.shape) if t.shape is not None else '[?]'}" for t in tensors)


def _expected(family: str | None, task: str | None) -> str:
    family, task = family or "yolo", task or "detect"
    extra = {"detect": "", "segment": " + 32 mask coefficients", "pose": " + K*3 keypoints"}[task]
    rows = {"yolo": f"[B, 4 + nc{extra}, anchors]",
            "end2end": f"[B, max_det, 6{extra}] (x1, y1, x2, y2, score, class)",
            "rtdetr": "[B, 300, 6] (cx, cy, w, h normalised, score, class)"}[family]
    protos = " and protos [B, 32, H/4, W/4]" if task == "segment" else ""
    return f"an Ultralytics {family} {task} export: images [B, 3, H, W] float -> {rows}{protos}"


@dataclass(frozen=True)
class _Image:
    tensor: TensorInfo
    height: int
    width: int
    batch_size: int | None


def _image_input(graph: OnnxGraph, said: _Said, caller_size: tuple[int, int] | None, found: str) -> _Image:
    """The one [B, 3, H, W] float input; H, W from the graph, else the caller or metadata."""
    image = graph.inputs[0] if len(graph.inputs) == 1 else None
    if image is None or image.shape is None or len(image.shape) != 4 or image.shape[1] != 3 \
            or image.elem_type not in FLOAT_INPUTS:
        raise LayoutError(f"expected one input images [B, 3, H, W] of float32 or float16 (RGB/255); {found}")
    h, w = _size(image.shape[2]), _size(image.shape[3])
    if h and w:
        if caller_size and caller_size != (h, w):
            raise LayoutError(f"input size {list(caller_size)} given, the graph's input is {[h, w]} (H, W)")
        return _Image(image, h, w, _size(image.shape[0]))
    if said.input_size is None:
        raise LayoutError(f"the graph's input size is dynamic and the file has no 'imgsz': give the input size; {found}")
    return _Image(image, said.input_size[0], said.input_size[1], _size(image.shape[0]))


def describe_graph(graph: OnnxGraph, *, task: str | None = None, names: Sequence[str] | None = None,
                   family: str | None = None, input_size: int | tuple[int, int] | None = None,
                   kpt_shape: tuple[int, int] | None = None) -> UltralyticsLayout:
    """The layout of `graph`. The keyword arguments say what the caller knows (e.g. from
    `models add` flags); each must agree with the file's metadata and shapes."""
    found = f"found inputs: {_describe(graph.inputs)}; outputs: {_describe(graph.outputs)}"
    caller_size = _pair(input_size, "input size")
    said = _agreed(_from_metadata(graph.metadata),
                   _Said(task, family, tuple(str(n) for n in names) if names is not None else None,
                         (kpt_shape[0], kpt_shape[1]) if kpt_shape is not None else None, caller_size))
    image = _image_input(graph, said, caller_size, found)

    # The outputs: one rank-3 detections tensor, plus rank-4 prototypes for segment.
    rank3 = [t for t in graph.outputs if t.shape is not None and len(t.shape) == 3]
    rank4 = [t for t in graph.outputs if t.shape is not None and len(t.shape) == 4]
    if len(rank3) != 1 or len(rank4) > 1 or len(rank3) + len(rank4) != len(graph.outputs):
        raise LayoutError(f"expected {_expected(said.family, said.task)}; {found}")
    out, protos = rank3[0], (rank4[0] if rank4 else None)
    task = said.task or ("segment" if protos is not None else "pose" if said.kpt_shape is not None else "detect")
    if (task == "segment") != (protos is not None):
        raise LayoutError(f"expected {_expected(said.family, task)}; {found}")
    mask_dim = _size(protos.shape[1]) if protos is not None and protos.shape is not None else 0
    if protos is not None and not mask_dim:
        raise LayoutError(f"the prototypes' channel count must be fixed; {found}")
    kpt = said.kpt_shape if task == "pose" else None
    if task == "pose" and kpt is None:
        raise LayoutError("a pose export without metadata 'kpt_shape' needs the keypoint shape (K, 2 or 3)")
    extra = (mask_dim or 0) + (kpt[0] * kpt[1] if kpt else 0)

    assert out.shape is not None
    rows, width = out.shape[1], out.shape[2]
    family = said.family
    if family is None:
        # No metadata: a raw head is channels-first [B, C, anchors] with C < anchors;
        # final rows [B, K, 6 + extra] are end2end or RT-DETR, which only the caller knows.
        if not (isinstance(width, str) or (isinstance(rows, int) and isinstance(width, int) and rows < width)):
            raise LayoutError(f"{out.name} {list(out.shape)} looks like final rows [B, K, 6 + extra]: "
                              f"say which family it is (end2end or rtdetr); {found}")
        family = "yolo"
    if family == "rtdetr" and task != "detect":
        raise LayoutError(f"RT-DETR exports are detect only, not {task}")

    names = said.names
    if family == "yolo":
        channels = _size(rows)
        if channels is None or channels <= BOX_CHANNELS + extra:
            raise LayoutError(f"expected {_expected(family, task)}; {found}")
        nc = channels - BOX_CHANNELS - extra
        if names is not None and len(names) != nc:
            raise LayoutError(f"{len(names)} class names, but {out.name} has {channels} channels = 4 + {nc} classes"
                              + (f" + {extra} {task} values" if extra else ""))
        names = names or tuple(f"class{i}" for i in range(nc))  # Ultralytics' names when there are none
    elif _size(width) != ROW_FIXED + extra:
        raise LayoutError(f"expected {_expected(family, task)}; {found}")
    elif names is None:
        raise LayoutError(f"{out.name} rows carry class ids, not scores per class: give the class names; {found}")
    if not names:
        raise LayoutError("at least one class name is needed")
    for t in graph.outputs:
        if image.batch_size is not None and t.shape is not None and _size(t.shape[0]) not in (image.batch_size, None):
            raise LayoutError(f"{t.name} has batch {t.shape[0]}, the input {image.batch_size}; {found}")
    return UltralyticsLayout(
        family=family, task=task, names=names, input_name=image.tensor.name, input_dtype=image.tensor.elem_type,
        input_height=image.height, input_width=image.width, batch_size=image.batch_size, output_name=out.name,
        protos_name=protos.name if protos is not None else None, mask_dim=mask_dim or 0, kpt_shape=kpt,
        license=graph.metadata.get("license", ""))


def read_layout(path: str | Path, *, task: str | None = None, names: Sequence[str] | None = None,
                family: str | None = None, input_size: int | tuple[int, int] | None = None,
                kpt_shape: tuple[int, int] | None = None) -> UltralyticsLayout:
    """The layout of the ONNX file at `path` (the keywords as `describe_graph`'s). Raises
    NotOnnxError for a file that is not ONNX, LayoutError for one of no known layout (both
    ValueError)."""
    return describe_graph(read_onnx_graph(path), task=task, names=names, family=family, input_size=input_size,
                          kpt_shape=kpt_shape)
