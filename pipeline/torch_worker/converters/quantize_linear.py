"""ONNX QuantizeLinear -> round half to even, add the zero point, saturate (onnx2torch 1.5.15 has none).

tf2onnx emits it for quantized .tflite models; the arithmetic is onnxruntime's, per tensor or per axis.
Traced with torch.fx, so model.pt loads without this package."""

from __future__ import annotations

import torch
from onnx2torch.node_converters.registry import add_converter
from onnx2torch.onnx_graph import OnnxGraph
from onnx2torch.onnx_node import OnnxNode
from onnx2torch.utils.common import OperationConverterResult, onnx_mapping_from_node
from torch import fx, nn

from pipeline.torch_worker.converters._quantization import RANGES, scale_rank, zero_point_type


class _Quantize(nn.Module):
    def __init__(self, axis: int, per_axis: bool, dtype: torch.dtype):
        super().__init__()
        self.axis, self.per_axis, self.dtype = axis, per_axis, dtype
        self.low, self.high = RANGES[dtype]

    def forward(self, x, scale, zero_point):
        if self.per_axis:  # scale and zero point run along `axis`: broadcast them over the last axis
            x = x.movedim(self.axis, -1)
        q = torch.round(x / scale) + zero_point.to(torch.float32)
        q = torch.clamp(q, self.low, self.high).to(self.dtype)
        return q.movedim(-1, self.axis) if self.per_axis else q


@add_converter(operation_type="QuantizeLinear", version=10)
@add_converter(operation_type="QuantizeLinear", version=13)
def convert_quantize(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    if len(node.input_values) < 3 or not node.input_values[2]:
        raise NotImplementedError(f"QuantizeLinear node '{node.name}' without a zero point is not supported")
    module = _Quantize(
        node.attributes.get("axis", 1), scale_rank(node, graph) == 1, zero_point_type(node, graph)
    )
    return OperationConverterResult(
        torch_module=fx.symbolic_trace(module), onnx_mapping=onnx_mapping_from_node(node)
    )
