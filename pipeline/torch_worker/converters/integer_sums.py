"""Sums and products of integer tensors keep their dtype.

torch.sum, torch.prod and torch.cumsum promote int8/16/32, uint8 and bool to int64, where ONNX keeps
the input's type: an int32 ReduceSum (tf2onnx writes one for keras.layers.Discretization and for
counting masks) came out int64. Every registered converter of these ops is wrapped, for inputs of a
promoted type, in a GraphModule that calls the converter's module and casts its result back to the
input's type (known from the graph's types); model.pt needs nothing beyond what that module needs.
"""

from __future__ import annotations

import numpy as np
import torch
from onnx import TensorProto, helper
from onnx2torch.utils.common import OperationConverterResult
from torch import fx, nn

from pipeline.torch_worker.converters._functional import register_module, registered, static_dtype

_OPS = {
    "ReduceSum": (1, 11, 13),
    "ReduceProd": (1, 11, 13, 18),
    "ReduceSumSquare": (1, 11, 13, 18),
    "ReduceL1": (1, 11, 13, 18),
    "CumSum": (11, 14),
}
_PROMOTED = {TensorProto.BOOL, TensorProto.INT8, TensorProto.INT16, TensorProto.INT32, TensorProto.UINT8}


def _cast_after(module: nn.Module, inputs: int, dtype: torch.dtype) -> fx.GraphModule:
    root = nn.Module()
    root.inner = module
    graph = fx.Graph()
    args = [graph.placeholder(f"x{i}") for i in range(inputs)]
    result = graph.call_module("inner", tuple(args))
    graph.output(graph.call_method("to", (result, dtype)))
    return fx.GraphModule(root, graph)


def _keep_dtype(original):
    def convert(node, graph) -> OperationConverterResult:
        converted = original(node, graph)
        dtype = static_dtype(node.input_values[0], graph)
        if dtype not in _PROMOTED:
            return converted  # float, int64, or a type the graph does not record: torch keeps it
        torch_dtype = torch.from_numpy(np.zeros(0, helper.tensor_dtype_to_np_dtype(dtype))).dtype
        module = _cast_after(converted.torch_module, len(converted.onnx_mapping.inputs), torch_dtype)
        return OperationConverterResult(torch_module=module, onnx_mapping=converted.onnx_mapping)

    return convert


for _op, _versions in _OPS.items():
    for _version in _versions:
        register_module(_op, [_version], _keep_dtype(registered(_op, _version)), replace=True)
