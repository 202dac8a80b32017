"""Checks that prelabel/core/models/onnx_graph.py reads a file's edges as onnxruntime does."""
from __future__ import annotations

from prelabel.core.models.onnx_graph import OnnxGraph

ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int32)": "int32",
             "tensor(int64)": "int64", "tensor(uint8)": "uint8"}


def assert_agrees_with_onnxruntime(g: OnnxGraph, sess) -> None:
    """The reader's edges are onnxruntime's: names, types, and every dimension the file
    fixes (where the file leaves one symbolic, onnxruntime may show what it inferred)."""
    for ours, theirs in ((g.inputs, sess.get_inputs()), (g.outputs, sess.get_outputs())):
        assert [t.name for t in ours] == [t.name for t in theirs]
        for mine, ort_t in zip(ours, theirs, strict=True):
            assert mine.elem_type == ORT_TYPES[ort_t.type] and mine.shape is not None
            assert len(mine.shape) == len(ort_t.shape)
            for dim, ort_dim in zip(mine.shape, ort_t.shape, strict=True):
                assert dim == ort_dim or (isinstance(dim, str) and isinstance(ort_dim, int)), (mine, ort_t)
    assert g.metadata == sess.get_modelmeta().custom_metadata_map
