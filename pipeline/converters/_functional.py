"""Converters written as plain functions of tensors, traced with torch.fx.

A traced function becomes a GraphModule whose code calls torch only, so a saved model.pt needs neither
this package nor onnx2torch to load. Attribute values the function closes over are baked into the
traced code as constants.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from onnx2torch.node_converters.registry import _CONVERTER_REGISTRY, OperationDescription
from onnx2torch.onnx_graph import OnnxGraph
from onnx2torch.onnx_node import OnnxNode
from onnx2torch.utils.common import OnnxMapping, OperationConverterResult, onnx_mapping_from_node
from torch import fx

# A builder takes the node (and graph) and returns the function that computes the node's outputs.
Builder = Callable[[OnnxNode, OnnxGraph], Callable]


def traced(function: Callable, name: str | None = None) -> fx.GraphModule:
    module = fx.symbolic_trace(function)
    if name:
        module.__class__.__name__ = name
    return module


def result(function: Callable, node: OnnxNode, inputs: Iterable[str] | None = None) -> OperationConverterResult:
    """The converter result for `function` applied to the node's inputs (or to `inputs`, a subset)."""
    mapping = (
        onnx_mapping_from_node(node)
        if inputs is None
        else OnnxMapping(inputs=tuple(inputs), outputs=node.output_values)
    )
    return OperationConverterResult(torch_module=traced(function), onnx_mapping=mapping)


def present_inputs(node: OnnxNode) -> list[str]:
    """The node's input names without the trailing empty ones (omitted optional inputs)."""
    names = list(node.input_values)
    while names and not names[-1]:
        names.pop()
    return names


def register(op_type: str, versions: Iterable[int], builder: Builder, replace: bool = False) -> None:
    """Register `builder` for each version; `replace` takes the place of onnx2torch's own converter."""

    def convert(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
        return result(builder(node, graph), node)

    for version in versions:
        key = OperationDescription(domain="", operation_type=op_type, version=version)
        if key in _CONVERTER_REGISTRY and not replace:
            raise ValueError(f"{key} is registered already")
        _CONVERTER_REGISTRY[key] = convert
