"""Unsigned 16/32/64-bit integers, which torch stores but has almost no kernels for: a graph rewrite
before import computes every node that reads such a value in int64 (Cast in, Cast back out).

uint16 and uint32 values are exact in int64. uint64 values are carried modulo 2**64, so addition,
subtraction, multiplication, bitwise ops and left shifts give the same bits; division, modulo,
comparison, min/max and right shifts differ for values of 2**63 and above. TF graphs meet these types
only through tf.bitcast / explicit uint casts, so that limit is listed, not converted around.
"""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper

UNSIGNED = {TensorProto.UINT16, TensorProto.UINT32, TensorProto.UINT64}
# Ops torch runs on any dtype, or that only read a value's shape.
_UNTOUCHED = {"Cast", "Shape", "Size", "Identity"}


def widen_unsigned(model: onnx.ModelProto) -> int:
    """Rewrite `model` in place; return how many nodes now compute in int64."""
    if not _mentions_unsigned(model.graph):
        return 0
    inferred = onnx.shape_inference.infer_shapes(model)
    types = _value_types(inferred.graph)
    return _rewrite(model.graph, types)


def _mentions_unsigned(graph: onnx.GraphProto) -> bool:
    infos = [*graph.input, *graph.output, *graph.value_info]
    if any(i.type.tensor_type.elem_type in UNSIGNED for i in infos):
        return True
    if any(t.data_type in UNSIGNED for t in graph.initializer):
        return True
    for node in graph.node:
        for attr in node.attribute:
            if attr.name == "to" and attr.i in UNSIGNED:
                return True
            if attr.HasField("t") and attr.t.data_type in UNSIGNED:
                return True
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                if _mentions_unsigned(sub):
                    return True
    return False


def _value_types(graph: onnx.GraphProto) -> dict[str, int]:
    types = {t.name: t.data_type for t in graph.initializer}
    for info in [*graph.input, *graph.output, *graph.value_info]:
        if info.type.HasField("tensor_type"):
            types[info.name] = info.type.tensor_type.elem_type
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].HasField("t"):
            types[node.output[0]] = node.attribute[0].t.data_type
        for attr in node.attribute:
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                types.update(_value_types(sub))
    return types


def _rewrite(graph: onnx.GraphProto, types: dict[str, int]) -> int:
    nodes: list[onnx.NodeProto] = []
    widened: dict[str, str] = {}  # unsigned value -> its int64 copy, one Cast per value
    count = 0
    for node in graph.node:
        for attr in node.attribute:
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                count += _rewrite(sub, types)
        unsigned_in = [n for n in node.input if n and types.get(n) in UNSIGNED]
        if node.op_type in _UNTOUCHED or node.domain not in ("", "ai.onnx") or not unsigned_in:
            nodes.append(node)
            continue
        for name in unsigned_in:
            if name not in widened:
                widened[name] = f"{name}__int64"
                nodes.append(helper.make_node("Cast", [name], [widened[name]], to=TensorProto.INT64))
        node.input[:] = [widened.get(n, n) for n in node.input]
        back = []
        for index, name in enumerate(node.output):
            if name and types.get(name) in UNSIGNED:
                node.output[index] = f"{name}__int64_result"
                back.append(helper.make_node("Cast", [node.output[index]], [name], to=types[name]))
        nodes.append(node)
        nodes.extend(back)
        count += 1
    del graph.node[:]
    graph.node.extend(nodes)
    return count
