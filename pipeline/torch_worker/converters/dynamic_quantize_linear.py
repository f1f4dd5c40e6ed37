"""ONNX DynamicQuantizeLinear -> uint8 with a scale and zero point from the tensor's own range
(onnx2torch 1.5.15 has none). Traced with torch.fx, so model.pt loads without this package."""

from __future__ import annotations

import torch
from onnx2torch.node_converters.registry import add_converter
from onnx2torch.onnx_graph import OnnxGraph
from onnx2torch.onnx_node import OnnxNode
from onnx2torch.utils.common import OperationConverterResult, onnx_mapping_from_node
from torch import fx, nn


class _DynamicQuantize(nn.Module):
    """uint8 quantization with a scale and zero point computed from the tensor's own range."""

    def forward(self, x):
        low = torch.clamp(x.min(), max=0.0)
        high = torch.clamp(x.max(), min=0.0)
        scale = (high - low) / 255.0
        safe_scale = torch.where(scale == 0, torch.ones_like(scale), scale)
        zero_point = torch.clamp(torch.round(-low / safe_scale), 0, 255)
        q = torch.clamp(torch.round(x / safe_scale) + zero_point, 0, 255).to(torch.uint8)
        return q, scale, zero_point.to(torch.uint8)


@add_converter(operation_type="DynamicQuantizeLinear", version=11)
def convert_dynamic_quantize(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    return OperationConverterResult(
        torch_module=fx.symbolic_trace(_DynamicQuantize()), onnx_mapping=onnx_mapping_from_node(node)
    )
