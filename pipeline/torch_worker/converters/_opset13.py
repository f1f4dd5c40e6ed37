"""Shared by the opset 18 converters: opset 18 changed how Reduce*, Split, Pad and Resize take their
axes and options. Each converter rewrites a node into its opset 13 form and hands it to onnx2torch's
own converter for that form; what the old form cannot express is refused with the reason."""

from __future__ import annotations

from onnx import helper
from onnx2torch.node_converters.registry import _CONVERTER_REGISTRY, OperationDescription
from onnx2torch.onnx_graph import OnnxGraph
from onnx2torch.onnx_node import OnnxNode
from onnx2torch.utils.common import get_const_value


def opset13_converter(op_type: str):
    return _CONVERTER_REGISTRY[OperationDescription(domain="", operation_type=op_type, version=13)]


def rewritten(node: OnnxNode, inputs: list[str], drop: set[str], **attributes) -> OnnxNode:
    proto = helper.make_node(
        node.proto.op_type, inputs, list(node.proto.output), name=node.proto.name, **attributes
    )
    proto.attribute.extend(a for a in node.proto.attribute if a.name not in drop | set(attributes))
    return OnnxNode(proto, node.unique_name)


def constant_ints(name: str, node: OnnxNode, graph: OnnxGraph, what: str) -> list[int]:
    try:
        value = get_const_value(name, graph)
    except KeyError:
        raise NotImplementedError(
            f"{node.operation_type} node '{node.name}': {what} computed at run time"
        ) from None
    return [int(v) for v in (value.tolist() if hasattr(value, "tolist") else value)]
