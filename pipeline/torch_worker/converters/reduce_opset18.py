"""Opset 18 Reduce* (axes moved from an attribute to an input) -> onnx2torch's opset 13 converters."""

from __future__ import annotations

from onnx2torch.node_converters.registry import add_converter
from onnx2torch.onnx_graph import OnnxGraph
from onnx2torch.onnx_node import OnnxNode
from onnx2torch.utils.common import OnnxMapping, OperationConverterResult
from torch import nn

from pipeline.torch_worker.converters._opset13 import constant_ints, opset13_converter, rewritten

_REDUCE_OPS = (
    "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax",
    "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSumSquare",
)  # fmt: skip


def _convert_reduce(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    names = list(node.input_values)
    axes = constant_ints(names[1], node, graph, "axes") if len(names) > 1 and names[1] else []
    if not axes and node.attributes.get("noop_with_empty_axes", 0):
        return OperationConverterResult(torch_module=nn.Identity(), onnx_mapping=_mapping(names[:1], node))
    extra = {"axes": axes} if axes else {}
    return opset13_converter(node.operation_type)(
        rewritten(node, names[:1], {"noop_with_empty_axes"}, **extra), graph
    )


def _mapping(inputs: list[str], node: OnnxNode) -> OnnxMapping:
    return OnnxMapping(inputs=tuple(inputs), outputs=node.output_values)


for _op in _REDUCE_OPS:
    add_converter(operation_type=_op, version=18)(_convert_reduce)
