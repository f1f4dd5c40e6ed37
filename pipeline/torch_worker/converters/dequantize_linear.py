"""ONNX DequantizeLinear -> (x - zero point) * scale, per tensor or per axis (onnx2torch 1.5.15 has none).

Traced with torch.fx, so model.pt loads without this package."""

from __future__ import annotations

import torch
from onnx2torch.node_converters.registry import add_converter
from onnx2torch.onnx_graph import OnnxGraph
from onnx2torch.onnx_node import OnnxNode
from onnx2torch.utils.common import OnnxMapping, OperationConverterResult
from torch import fx, nn

from pipeline.torch_worker.converters._quantization import scale_rank


class _Dequantize(nn.Module):
    def __init__(self, axis: int, per_axis: bool):
        super().__init__()
        self.axis, self.per_axis = axis, per_axis

    def forward(self, x, scale, zero_point):
        if self.per_axis:
            x = x.movedim(self.axis, -1)
        y = (x.to(torch.float32) - zero_point.to(torch.float32)) * scale
        return y.movedim(-1, self.axis) if self.per_axis else y


class _DequantizeWithoutZeroPoint(nn.Module):
    def __init__(self, axis: int, per_axis: bool):
        super().__init__()
        self.axis, self.per_axis = axis, per_axis

    def forward(self, x, scale):
        if self.per_axis:
            x = x.movedim(self.axis, -1)
        y = x.to(torch.float32) * scale
        return y.movedim(-1, self.axis) if self.per_axis else y


@add_converter(operation_type="DequantizeLinear", version=10)
@add_converter(operation_type="DequantizeLinear", version=13)
def convert_dequantize(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    axis, per_axis = node.attributes.get("axis", 1), scale_rank(node, graph) == 1
    names = tuple(n for n in node.input_values if n)
    module = _Dequantize(axis, per_axis) if len(names) == 3 else _DequantizeWithoutZeroPoint(axis, per_axis)
    return OperationConverterResult(
        torch_module=fx.symbolic_trace(module),
        onnx_mapping=OnnxMapping(inputs=names, outputs=node.output_values),
    )
