"""Opset 18 Pad (optional `axes` input) -> onnx2torch's opset 13 converter."""

from __future__ import annotations

from onnx2torch.node_converters.registry import add_converter
from onnx2torch.onnx_graph import OnnxGraph
from onnx2torch.onnx_node import OnnxNode
from onnx2torch.utils.common import OperationConverterResult

from pipeline.converters._opset13 import opset13_converter, rewritten


def _convert_pad(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    names = list(node.input_values)
    if len(names) > 3 and names[3]:
        raise NotImplementedError(f"Pad node '{node.name}': the `axes` input of opset 18 is not supported")
    return opset13_converter("Pad")(rewritten(node, names[:3], set()), graph)


add_converter(operation_type="Pad", version=18)(_convert_pad)
