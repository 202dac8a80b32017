"""Convert one TensorFlow.js graph model to ONNX, reproducibly.

Runs inside the converter virtualenv that `prelabel models pull` creates (pinned
tensorflow-cpu + tf2onnx + onnx); the services never import it.

    python tfjs_to_onnx.py MODEL.json OUT.onnx [--opset 17]

Two things on top of `tf2onnx.convert --tfjs`:

- a shim for `_FusedConv2D` nodes whose TFJS JSON lacks the `TArgs` attr (MoveNet):
  tf2onnx rebuilds each node in a one-node TF graph to infer its output shapes, and
  TensorFlow's importer refuses the node without it. `TArgs` is one dtype per fused
  argument (bias, ...), all of the conv's own type `T`;
- a shim for ops whose TFJS JSON lacks an attr that has a default in TensorFlow's op
  definition (TopKV2 `index_type`, added to TF after the model was exported): tf2onnx
  reads output dtypes from the attrs it was given, so the default is filled in;
- node order: tf2onnx's optimizers iterate over sets of its `Node` objects (e.g. the
  transpose optimizer's `set(node.inputs)`), whose order follows the objects' memory
  addresses, so now and then a run removes one Reshape fewer (seen: 192 vs 191 nodes,
  about one run in ten on a loaded machine). Nodes get a hash from a creation counter,
  which makes every such set iterate in the same order run to run;
- names: tf2onnx invents node/tensor names from a hash-seeded counter, so two runs of
  the same conversion differ byte-wise. Every node and internal tensor is renamed in
  order of appearance (graph inputs and outputs keep their names), which together with
  PYTHONHASHSEED=0 (set by the caller) makes the output byte-identical run to run.
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import sys


def _patch_fused_conv_targs() -> None:
    from tf2onnx import tfjs_utils

    original = tfjs_utils.get_output_shapes

    def get_output_shapes(node_def, input_dtypes, input_shapes, inp_consts):
        if node_def.op == "_FusedConv2D" and "TArgs" not in node_def.attr:
            num_args = node_def.attr["num_args"].i
            node_def.attr["TArgs"].list.type.extend([node_def.attr["T"].type] * num_args)
        return original(node_def, input_dtypes, input_shapes, inp_consts)

    tfjs_utils.get_output_shapes = get_output_shapes


def _patch_node_hash() -> None:
    """Hash tf2onnx's Nodes by creation order, not by address (see the module docstring).
    Equality stays identity, and a node's hash never changes, so sets and dicts behave as
    before, only their iteration order is reproducible."""
    from tf2onnx import graph

    created = itertools.count()
    original = graph.Node.__init__

    def __init__(self, *args, **kwargs):
        self._creation_index = next(created)
        original(self, *args, **kwargs)

    graph.Node.__init__ = __init__
    graph.Node.__hash__ = lambda self: self._creation_index


def _patch_default_type_attrs() -> None:
    import tensorflow as tf
    from tf2onnx import tfjs_utils

    original = tfjs_utils.get_output_names_and_dtypes

    def get_output_names_and_dtypes(op_type, tf_attr, inp_dtypes):
        try:
            op_def = tfjs_utils.tf_api_def_map.get_op_def(op_type)
        except ValueError:
            op_def = None
        if op_def is not None:
            for attr in op_def.attr:
                if attr.name not in tf_attr and attr.type == "type" and attr.HasField("default_value"):
                    tf_attr = {**tf_attr, attr.name: tf.dtypes.as_dtype(attr.default_value.type)}
        return original(op_type, tf_attr, inp_dtypes)

    tfjs_utils.get_output_names_and_dtypes = get_output_names_and_dtypes


def _digest(*parts: bytes) -> bytes:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.digest()


def canonicalize(model) -> None:
    """Put the graph in a canonical form (in place): initializers sorted by content,
    nodes in a topological order broken by structural keys (op, attributes, keys of
    the inputs) rather than by the order tf2onnx happened to emit them, then every
    node and internal tensor renamed in that order. Graph inputs and outputs keep
    their names."""
    graph = model.graph
    keep = [v.name for v in graph.input] + [v.name for v in graph.output]
    key: dict[str, bytes] = {name: _digest(b"io", name.encode()) for name in keep}
    key[""] = b""
    for init in graph.initializer:
        stripped = type(init)()
        stripped.CopyFrom(init)
        stripped.name = ""
        key[init.name] = _digest(b"init", stripped.SerializeToString())
    produced_by = {out: node for node in graph.node for out in node.output}
    node_key: dict[int, bytes] = {}

    def key_of_node(node) -> bytes:
        if id(node) not in node_key:
            inputs = []
            for name in node.input:
                if name not in key:
                    producer = produced_by[name]
                    k = key_of_node(producer)
                    key[name] = _digest(k, str(list(producer.output).index(name)).encode())
                inputs.append(key[name])
            attrs = b"".join(a.SerializeToString() for a in sorted(node.attribute, key=lambda a: a.name))
            node_key[id(node)] = _digest(node.op_type.encode(), node.domain.encode(), attrs, *inputs)
        return node_key[id(node)]

    sys.setrecursionlimit(max(10000, 4 * len(graph.node)))
    for node in graph.node:
        key_of_node(node)
    # Kahn's algorithm, smallest structural key first among the ready nodes.
    consumers: dict[str, list] = {}
    waiting: dict[int, int] = {}
    for node in graph.node:
        deps = {n for n in node.input if n in produced_by}
        waiting[id(node)] = len(deps)
        for n in deps:
            consumers.setdefault(n, []).append(node)
    ready = sorted((n for n in graph.node if waiting[id(n)] == 0), key=key_of_node)
    order = []
    while ready:
        node = ready.pop(0)
        order.append(node)
        for out in node.output:
            for consumer in consumers.get(out, []):
                waiting[id(consumer)] -= 1
                if waiting[id(consumer)] == 0:
                    ready.append(consumer)
        ready.sort(key=key_of_node)
    if len(order) != len(graph.node):
        raise ValueError("graph has a cycle")
    nodes = [_copy(n) for n in order]
    inits = sorted(graph.initializer, key=lambda i: key[i.name])
    inits = [_copy(i) for i in inits]

    mapping: dict[str, str] = {name: name for name in keep}
    mapping[""] = ""

    def rename(old: str) -> str:
        if old not in mapping:
            mapping[old] = f"t{len(mapping)}"
        return mapping[old]

    for init in inits:
        init.name = rename(init.name)
    for i, node in enumerate(nodes):
        node.name = f"n{i}"
        node.input[:] = [rename(n) for n in node.input]
        node.output[:] = [rename(n) for n in node.output]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(inits)
    # Shape annotations are optional and name internal tensors: drop them.
    del graph.value_info[:]
    model.producer_version = ""
    graph.doc_string = ""


def make_batchable(model) -> int:
    """Give the graph a symbolic batch axis: inputs and outputs get dim 0 `batch`, and
    every Reshape whose constant target shape starts with 1 (the exported batch) gets 0
    there instead ("copy the input's dim 0"). Only for graphs where that is the whole
    story (selfie); the caller checks batch-of-N against N batches of 1. Returns the
    number of Reshape constants changed."""
    from onnx import numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    changed = 0
    for node in graph.node:
        if node.op_type == "Reshape" and node.input[1] in inits:
            shape = numpy_helper.to_array(inits[node.input[1]])
            if shape.ndim == 1 and len(shape) and shape[0] == 1:
                shape = shape.copy()
                shape[0] = 0
                inits[node.input[1]].CopyFrom(numpy_helper.from_array(shape, node.input[1]))
                changed += 1
    for value in list(graph.input) + list(graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        dim.ClearField("dim_value")
        dim.dim_param = "batch"
    return changed


def _copy(message):
    out = type(message)()
    out.CopyFrom(message)
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("tfjs_json")
    parser.add_argument("output")
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--batchable", action="store_true", help="symbolic batch axis (see make_batchable)")
    args = parser.parse_args(argv)

    import onnx
    from tf2onnx import convert

    _patch_fused_conv_targs()
    _patch_default_type_attrs()
    _patch_node_hash()
    sys.argv = ["tf2onnx.convert", "--tfjs", args.tfjs_json, "--output", args.output,
                "--opset", str(args.opset)]
    convert.main()
    model = onnx.load(args.output)
    canonicalize(model)
    if args.batchable:
        make_batchable(model)
    onnx.checker.check_model(model)
    onnx.save(model, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
