"""Sums and products of integer tensors keep their dtype.

torch.sum, torch.prod and torch.cumsum promote int8/16/32 (and bool) to int64, where ONNX keeps the
input's type: an int32 ReduceSum (tf2onnx writes one for keras.layers.Discretization and for counting
masks) came out int64. Every registered converter of these ops is wrapped to cast its result back to
the input's dtype; the wrapped module is traced to torch code, so model.pt needs nothing new. A
module fx cannot trace (onnx2torch's reductions over axes computed at run time) is left as it was.
"""

from __future__ import annotations

from onnx import TensorProto
from onnx2torch.utils.common import OperationConverterResult
from torch import fx, nn

from pipeline.converters._functional import register_module, registered, static_dtype

_OPS = {
    "ReduceSum": (1, 11, 13),
    "ReduceProd": (1, 11, 13, 18),
    "ReduceSumSquare": (1, 11, 13, 18),
    "ReduceL1": (1, 11, 13, 18),
    "CumSum": (11, 14),
}


class _SameDtype(nn.Module):
    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x, *rest):
        return self.inner(x, *rest).to(x.dtype)


_PROMOTED = {TensorProto.BOOL, TensorProto.INT8, TensorProto.INT16, TensorProto.INT32, TensorProto.UINT8}


def _keep_dtype(original):
    def convert(node, graph) -> OperationConverterResult:
        converted = original(node, graph)
        dtype = static_dtype(node.input_values[0], graph)
        if dtype is not None and dtype not in _PROMOTED:
            return converted  # float or int64: torch keeps it
        try:
            module = fx.symbolic_trace(_SameDtype(converted.torch_module))
        except Exception:  # noqa: BLE001 - fx cannot trace it: left as onnx2torch made it, so that
            return converted  # model.pt needs no class of this package (its result may stay int64)
        return OperationConverterResult(torch_module=module, onnx_mapping=converted.onnx_mapping)

    return convert


for _op, _versions in _OPS.items():
    for _version in _versions:
        register_module(_op, [_version], _keep_dtype(registered(_op, _version)), replace=True)
