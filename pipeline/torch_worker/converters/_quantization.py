"""Shared helpers of the quantization converters (QuantizeLinear, DequantizeLinear)."""

from __future__ import annotations

import torch
from onnx import TensorProto
from onnx2torch.onnx_graph import OnnxGraph
from onnx2torch.onnx_node import OnnxNode

INTEGER_TYPES = {TensorProto.UINT8: torch.uint8, TensorProto.INT8: torch.int8}
RANGES = {torch.uint8: (0, 255), torch.int8: (-128, 127)}


def scale_rank(node: OnnxNode, graph: OnnxGraph) -> int:
    name = node.input_values[1]
    if name in graph.initializers:
        return len(graph.initializers[name].to_torch().shape)
    info = graph.value_info.get(name)
    if info is not None and info.type.tensor_type.HasField("shape"):
        return len(info.type.tensor_type.shape.dim)
    raise NotImplementedError(f"{node.operation_type} node '{node.name}': the rank of its scale is unknown")


def zero_point_type(node: OnnxNode, graph: OnnxGraph) -> torch.dtype:
    names = node.input_values
    if len(names) < 3 or not names[2]:
        return torch.uint8  # the spec's default
    if names[2] in graph.initializers:
        onnx_type = graph.initializers[names[2]].proto.data_type
    else:
        onnx_type = graph.value_info[names[2]].type.tensor_type.elem_type
    if onnx_type not in INTEGER_TYPES:
        raise NotImplementedError(
            f"{node.operation_type} node '{node.name}': zero point type {onnx_type} is not int8/uint8"
        )
    return INTEGER_TYPES[onnx_type]
