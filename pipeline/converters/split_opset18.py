"""Opset 18 Split (`num_outputs` attribute) -> onnx2torch's opset 13 converter."""

from __future__ import annotations

from onnx2torch.node_converters.registry import add_converter
from onnx2torch.onnx_graph import OnnxGraph
from onnx2torch.onnx_node import OnnxNode
from onnx2torch.utils.common import OperationConverterResult

from pipeline.converters._opset13 import opset13_converter, rewritten


def _convert_split(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    # opset 13 splits evenly into as many parts as the node has outputs; num_outputs says the same
    # unless the axis does not divide evenly, which onnx2torch's Split does not handle either.
    return opset13_converter("Split")(
        rewritten(node, [n for n in node.input_values if n], {"num_outputs"}), graph
    )


add_converter(operation_type="Split", version=18)(_convert_split)
