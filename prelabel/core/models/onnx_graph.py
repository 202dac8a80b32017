"""What an ONNX file declares at its edges -- graph inputs, outputs (names, element types,
shapes) and metadata_props -- read straight from the protobuf wire format.

Standard library only: checking a user's file needs neither the `onnx` package (not a
dependency of the suite) nor building an onnxruntime session (which loads every weight),
so the same reader can run wherever a model is added. The file is memory-mapped and only
the few message headers on the way are decoded; weights are skipped by their length.
Field numbers are onnx.proto's (ModelProto, GraphProto, ValueInfoProto, TypeProto,
TensorShapeProto, StringStringEntryProto).
"""
from __future__ import annotations

import mmap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# onnx.proto field numbers
_MODEL_IR_VERSION, _MODEL_GRAPH, _MODEL_METADATA = 1, 7, 14
_GRAPH_INITIALIZER, _GRAPH_INPUT, _GRAPH_OUTPUT = 5, 11, 12
_TENSOR_NAME = 8  # TensorProto.name (an initializer)
_VALUE_NAME, _VALUE_TYPE = 1, 2
_TYPE_TENSOR = 1
_TENSOR_TYPE_ELEM, _TENSOR_TYPE_SHAPE = 1, 2
_SHAPE_DIM = 1
_DIM_VALUE, _DIM_PARAM = 1, 2
_ENTRY_KEY, _ENTRY_VALUE = 1, 2

#: TensorProto.DataType values a layout may name.
ELEM_TYPES = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 9: "bool", 10: "float16", 11: "float64"}

_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5

Dim = int | str  # a fixed size, or a symbolic one (its dim_param, "?" when unnamed)


class NotOnnxError(ValueError):
    """The file is not an ONNX model (or is truncated)."""


@dataclass(frozen=True)
class TensorInfo:
    name: str
    elem_type: str  # ELEM_TYPES' name, or "type <n>" for others
    shape: tuple[Dim, ...] | None  # None: the graph declares no shape


@dataclass(frozen=True)
class OnnxGraph:
    ir_version: int
    inputs: tuple[TensorInfo, ...]  # graph inputs that are not initializers
    outputs: tuple[TensorInfo, ...]
    metadata: dict[str, str]


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise NotOnnxError("truncated or malformed varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(buf: memoryview) -> Iterator[tuple[int, int | memoryview]]:
    """(field number, value) of one message: an int for varints, the bytes for
    length-delimited fields; fixed-width fields are skipped."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise NotOnnxError("field number 0")
        if wire == _VARINT:
            value, pos = _varint(buf, pos)
            yield field, value
        elif wire == _LENGTH:
            size, pos = _varint(buf, pos)
            if pos + size > len(buf):
                raise NotOnnxError("length-delimited field runs past the end")
            yield field, buf[pos:pos + size]
            pos += size
        elif wire in (_FIXED64, _FIXED32):
            pos += 8 if wire == _FIXED64 else 4
            if pos > len(buf):
                raise NotOnnxError("fixed-width field runs past the end")
        else:
            raise NotOnnxError(f"wire type {wire}")


def _text(value: int | memoryview) -> str:
    if not isinstance(value, memoryview):
        raise NotOnnxError("a string field holds a number")
    try:
        return bytes(value).decode("utf-8")
    except UnicodeDecodeError as e:
        raise NotOnnxError("a string field is not UTF-8") from e


def _message(value: int | memoryview) -> memoryview:
    if not isinstance(value, memoryview):
        raise NotOnnxError("a message field holds a number")
    return value


def _dim(buf: memoryview) -> Dim:
    for field, value in _fields(buf):
        if field == _DIM_VALUE and isinstance(value, int):
            return value
        if field == _DIM_PARAM:
            return _text(value)
    return "?"


def _tensor_info(buf: memoryview) -> TensorInfo:
    name, elem, shape = "", "undefined", None
    for field, value in _fields(buf):
        if field == _VALUE_NAME:
            name = _text(value)
        elif field == _VALUE_TYPE:
            for tfield, tvalue in _fields(_message(value)):
                if tfield != _TYPE_TENSOR:
                    continue
                for sfield, svalue in _fields(_message(tvalue)):
                    if sfield == _TENSOR_TYPE_ELEM and isinstance(svalue, int):
                        elem = ELEM_TYPES.get(svalue, f"type {svalue}")
                    elif sfield == _TENSOR_TYPE_SHAPE:
                        shape = tuple(_dim(_message(d)) for f, d in _fields(_message(svalue)) if f == _SHAPE_DIM)
    return TensorInfo(name, elem, shape)


def _initializer_name(buf: memoryview) -> str:
    for field, value in _fields(buf):
        if field == _TENSOR_NAME:
            return _text(value)
    return ""


def parse_model(buf: memoryview) -> OnnxGraph:
    ir_version, graph, metadata = None, None, {}
    for field, value in _fields(buf):
        if field == _MODEL_IR_VERSION and isinstance(value, int):
            ir_version = value
        elif field == _MODEL_GRAPH:
            graph = _message(value)
        elif field == _MODEL_METADATA:
            entry = dict(_fields(_message(value)))
            metadata[_text(entry.get(_ENTRY_KEY, memoryview(b"")))] = _text(entry.get(_ENTRY_VALUE, memoryview(b"")))
    if ir_version is None or graph is None:
        raise NotOnnxError("no ir_version or no graph")
    inputs, outputs, initializers = [], [], set()
    for field, value in _fields(graph):
        if field == _GRAPH_INPUT:
            inputs.append(_tensor_info(_message(value)))
        elif field == _GRAPH_OUTPUT:
            outputs.append(_tensor_info(_message(value)))
        elif field == _GRAPH_INITIALIZER:
            initializers.add(_initializer_name(_message(value)))
    if not outputs:
        raise NotOnnxError("the graph declares no outputs")
    # IR < 4 lists initializers among the inputs; they are weights, not feeds.
    return OnnxGraph(ir_version, tuple(i for i in inputs if i.name not in initializers), tuple(outputs), metadata)


def read_onnx_graph(path: str | Path) -> OnnxGraph:
    """The edges of the ONNX model at `path`; NotOnnxError for anything else."""
    path = Path(path)
    problem = ""
    with open(path, "rb") as f:
        if path.stat().st_size == 0:
            raise NotOnnxError(f"{path} is empty, not an ONNX model")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            try:
                return parse_model(memoryview(mapped))
            except NotOnnxError as e:
                # Raised after the map is closed: the traceback's frames hold views into it.
                problem = str(e)
    raise NotOnnxError(f"{path} is not an ONNX model ({problem})")
