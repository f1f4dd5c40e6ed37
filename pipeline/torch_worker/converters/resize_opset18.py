"""Opset 18/19 Resize (`antialias`, `axes`, `keep_aspect_ratio_policy`) -> onnx2torch's opset 13 converter."""

from __future__ import annotations

from onnx2torch.node_converters.registry import add_converter
from onnx2torch.onnx_graph import OnnxGraph
from onnx2torch.onnx_node import OnnxNode
from onnx2torch.utils.common import OperationConverterResult

from pipeline.torch_worker.converters._opset13 import opset13_converter, rewritten


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
    return opset13_converter("Resize")(rewritten(node, list(node.input_values), drop), graph)


add_converter(operation_type="Resize", version=18)(_convert_resize)
add_converter(operation_type="Resize", version=19)(_convert_resize)
