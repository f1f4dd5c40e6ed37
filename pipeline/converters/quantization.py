"""ONNX QuantizeLinear, DequantizeLinear and DynamicQuantizeLinear (onnx2torch 1.5.15 has none).

tf2onnx emits them for quantized .tflite models. The arithmetic follows the ONNX spec as onnxruntime
computes it: round half to even, saturate to the zero point's integer type, per-tensor or per-axis
scales. Each module is traced with torch.fx, so model.pt loads without this package.
"""

from __future__ import annotations

import torch
from onnx import TensorProto
from onnx2torch.node_converters.registry import add_converter
from onnx2torch.onnx_graph import OnnxGraph
from onnx2torch.onnx_node import OnnxNode
from onnx2torch.utils.common import OnnxMapping, OperationConverterResult, onnx_mapping_from_node
from torch import fx, nn

_INTEGER_TYPES = {TensorProto.UINT8: torch.uint8, TensorProto.INT8: torch.int8}
_RANGES = {torch.uint8: (0, 255), torch.int8: (-128, 127)}


class _Quantize(nn.Module):
    def __init__(self, axis: int, per_axis: bool, dtype: torch.dtype):
        super().__init__()
        self.axis, self.per_axis, self.dtype = axis, per_axis, dtype
        self.low, self.high = _RANGES[dtype]

    def forward(self, x, scale, zero_point):
        if self.per_axis:  # scale and zero point run along `axis`: broadcast them over the last axis
            x = x.movedim(self.axis, -1)
        q = torch.round(x / scale) + zero_point.to(torch.float32)
        q = torch.clamp(q, self.low, self.high).to(self.dtype)
        return q.movedim(-1, self.axis) if self.per_axis else q


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


def _scale_rank(node: OnnxNode, graph: OnnxGraph) -> int:
    name = node.input_values[1]
    if name in graph.initializers:
        return len(graph.initializers[name].to_torch().shape)
    info = graph.value_info.get(name)
    if info is not None and info.type.tensor_type.HasField("shape"):
        return len(info.type.tensor_type.shape.dim)
    raise NotImplementedError(f"{node.operation_type} node '{node.name}': the rank of its scale is unknown")


def _zero_point_type(node: OnnxNode, graph: OnnxGraph) -> torch.dtype:
    names = node.input_values
    if len(names) < 3 or not names[2]:
        return torch.uint8  # the spec's default
    if names[2] in graph.initializers:
        onnx_type = graph.initializers[names[2]].proto.data_type
    else:
        onnx_type = graph.value_info[names[2]].type.tensor_type.elem_type
    if onnx_type not in _INTEGER_TYPES:
        raise NotImplementedError(
            f"{node.operation_type} node '{node.name}': zero point type {onnx_type} is not int8/uint8"
        )
    return _INTEGER_TYPES[onnx_type]


@add_converter(operation_type="QuantizeLinear", version=10)
@add_converter(operation_type="QuantizeLinear", version=13)
def convert_quantize(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    if len(node.input_values) < 3 or not node.input_values[2]:
        raise NotImplementedError(f"QuantizeLinear node '{node.name}' without a zero point is not supported")
    module = _Quantize(
        node.attributes.get("axis", 1), _scale_rank(node, graph) == 1, _zero_point_type(node, graph)
    )
    return OperationConverterResult(
        torch_module=fx.symbolic_trace(module), onnx_mapping=onnx_mapping_from_node(node)
    )


@add_converter(operation_type="DequantizeLinear", version=10)
@add_converter(operation_type="DequantizeLinear", version=13)
def convert_dequantize(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    axis, per_axis = node.attributes.get("axis", 1), _scale_rank(node, graph) == 1
    names = tuple(n for n in node.input_values if n)
    module = _Dequantize(axis, per_axis) if len(names) == 3 else _DequantizeWithoutZeroPoint(axis, per_axis)
    return OperationConverterResult(
        torch_module=fx.symbolic_trace(module),
        onnx_mapping=OnnxMapping(inputs=names, outputs=node.output_values),
    )


@add_converter(operation_type="DynamicQuantizeLinear", version=11)
def convert_dynamic_quantize(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    return OperationConverterResult(
        torch_module=fx.symbolic_trace(_DynamicQuantize()), onnx_mapping=onnx_mapping_from_node(node)
    )
