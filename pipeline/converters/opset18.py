"""Opset 18 versions of Reduce*, Split, Pad and Resize (onnx2torch 1.5.15 registers only older ones).

Opset 18 moved the Reduce ops' `axes` from an attribute to an input, gave Split a `num_outputs`
attribute, Pad an optional `axes` input and Resize `antialias`, `axes` and `keep_aspect_ratio_policy`.
Each node is rewritten into its opset 13 form and handed to onnx2torch's own converter for that form;
what the old form cannot express (run-time axes, antialiasing, ...) is refused with the reason.
"""

from __future__ import annotations

from onnx import helper
from onnx2torch.node_converters.registry import _CONVERTER_REGISTRY, OperationDescription, add_converter
from onnx2torch.onnx_graph import OnnxGraph
from onnx2torch.onnx_node import OnnxNode
from onnx2torch.utils.common import OnnxMapping, OperationConverterResult, get_const_value
from torch import nn

_REDUCE_OPS = (
    "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax",
    "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSumSquare",
)  # fmt: skip


def _opset13_converter(op_type: str):
    return _CONVERTER_REGISTRY[OperationDescription(domain="", operation_type=op_type, version=13)]


def _rewritten(node: OnnxNode, inputs: list[str], drop: set[str], **attributes) -> OnnxNode:
    proto = helper.make_node(
        node.proto.op_type, inputs, list(node.proto.output), name=node.proto.name, **attributes
    )
    proto.attribute.extend(a for a in node.proto.attribute if a.name not in drop | set(attributes))
    return OnnxNode(proto, node.unique_name)


def _constant_ints(name: str, node: OnnxNode, graph: OnnxGraph, what: str) -> list[int]:
    try:
        value = get_const_value(name, graph)
    except KeyError:
        raise NotImplementedError(
            f"{node.operation_type} node '{node.name}': {what} computed at run time"
        ) from None
    return [int(v) for v in (value.tolist() if hasattr(value, "tolist") else value)]


def _convert_reduce(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    names = list(node.input_values)
    axes = _constant_ints(names[1], node, graph, "axes") if len(names) > 1 and names[1] else []
    if not axes and node.attributes.get("noop_with_empty_axes", 0):
        return OperationConverterResult(torch_module=nn.Identity(), onnx_mapping=_mapping(names[:1], node))
    extra = {"axes": axes} if axes else {}
    return _opset13_converter(node.operation_type)(
        _rewritten(node, names[:1], {"noop_with_empty_axes"}, **extra), graph
    )


def _convert_split(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    # opset 13 splits evenly into as many parts as the node has outputs; num_outputs says the same
    # unless the axis does not divide evenly, which onnx2torch's Split does not handle either.
    return _opset13_converter("Split")(
        _rewritten(node, [n for n in node.input_values if n], {"num_outputs"}), graph
    )


def _convert_pad(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    names = list(node.input_values)
    if len(names) > 3 and names[3]:
        raise NotImplementedError(f"Pad node '{node.name}': the `axes` input of opset 18 is not supported")
    return _opset13_converter("Pad")(_rewritten(node, names[:3], set()), graph)


def _convert_resize(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    attrs = node.attributes
    unsupported = [
        name
        for name, default in (("antialias", 0), ("axes", None), ("keep_aspect_ratio_policy", "stretch"))
        if attrs.get(name, default) != default
    ]
    if unsupported:
        raise NotImplementedError(f"Resize node '{node.name}': {', '.join(unsupported)} not supported")
    drop = {"antialias", "axes", "keep_aspect_ratio_policy"}
    return _opset13_converter("Resize")(_rewritten(node, list(node.input_values), drop), graph)


def _mapping(inputs: list[str], node: OnnxNode) -> OnnxMapping:
    return OnnxMapping(inputs=tuple(inputs), outputs=node.output_values)


for _op in _REDUCE_OPS:
    add_converter(operation_type=_op, version=18)(_convert_reduce)
add_converter(operation_type="Split", version=18)(_convert_split)
add_converter(operation_type="Pad", version=18)(_convert_pad)
add_converter(operation_type="Resize", version=18)(_convert_resize)
add_converter(operation_type="Resize", version=19)(_convert_resize)
