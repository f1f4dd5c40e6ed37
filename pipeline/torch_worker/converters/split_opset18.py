"""Opset 18 Split (`num_outputs` attribute) -> onnx2torch's opset 13 converter; and a Split into one
part, at any opset, -> its input (onnx2torch returns a 1-tuple, which the next node then receives;
tf2onnx writes such a Split for tf.gather_nd with batch_dims)."""

from __future__ import annotations

import torch
from onnx2torch.node_converters.registry import add_converter
from onnx2torch.onnx_graph import OnnxGraph
from onnx2torch.onnx_node import OnnxNode
from onnx2torch.utils.common import OperationConverterResult

from pipeline.torch_worker.converters._functional import register, result
from pipeline.torch_worker.converters._opset13 import opset13_converter, rewritten


def _convert_split(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    # opset 13 splits evenly into as many parts as the node has outputs. num_outputs says the same
    # when the axis divides evenly; otherwise every part has ceil(length / n) elements but the last,
    # which opset 13 can only say with explicit sizes: those are written when the length is known.
    inputs = [n for n in node.input_values if n]
    parts = node.attributes.get("num_outputs")
    length = _axis_length(node, graph)
    if parts and len(inputs) == 1 and length is not None and length % parts:
        size = -(-length // parts)
        sizes = [size] * (length // size) + [length % size]
        axis = int(node.attributes.get("axis", 0))

        def split_uneven(x):
            return torch.split(x, sizes, dim=axis)

        return result(split_uneven, node)
    return opset13_converter("Split")(rewritten(node, inputs, {"num_outputs"}), graph)


def _axis_length(node: OnnxNode, graph: OnnxGraph) -> int | None:
    info = graph.value_info.get(node.input_values[0])
    if info is None or not info.type.tensor_type.HasField("shape"):
        return None
    dims = info.type.tensor_type.shape.dim
    dim = dims[int(node.attributes.get("axis", 0))]
    return dim.dim_value if dim.HasField("dim_value") else None


add_converter(operation_type="Split", version=18)(_convert_split)


def _single_part(node: OnnxNode, graph: OnnxGraph):
    if len(node.output_values) != 1:
        return None  # the converter registered before handles it

    def whole(x, split=None):
        return x

    return whole


register("Split", [1, 2, 11, 13, 18], _single_part, replace=True)
