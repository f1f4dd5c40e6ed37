"""ONNX Cast to any tensor type torch has (onnx2torch 1.5.15 lacks the unsigned 16/32/64-bit
targets, which unsigned.py's int64 rewrite casts back to). Strings have no torch type: refused."""

from __future__ import annotations

import torch
from onnx import TensorProto

from pipeline.torch_worker.converters._functional import register
from pipeline.torch_worker.converters.refusal import NotConvertible

TORCH_DTYPES = {
    TensorProto.FLOAT: torch.float32,
    TensorProto.DOUBLE: torch.float64,
    TensorProto.FLOAT16: torch.float16,
    TensorProto.BFLOAT16: torch.bfloat16,
    TensorProto.INT8: torch.int8,
    TensorProto.INT16: torch.int16,
    TensorProto.INT32: torch.int32,
    TensorProto.INT64: torch.int64,
    TensorProto.UINT8: torch.uint8,
    TensorProto.UINT16: torch.uint16,
    TensorProto.UINT32: torch.uint32,
    TensorProto.UINT64: torch.uint64,
    TensorProto.BOOL: torch.bool,
    TensorProto.COMPLEX64: torch.complex64,
    TensorProto.COMPLEX128: torch.complex128,
}


def torch_dtype(onnx_type: int, what: str) -> torch.dtype:
    if onnx_type not in TORCH_DTYPES:
        name = TensorProto.DataType.Name(onnx_type)
        raise NotConvertible(f"{what}: ONNX type {name} has no torch dtype")
    return TORCH_DTYPES[onnx_type]


def _cast(node, graph):
    dtype = torch_dtype(node.attributes["to"], f"Cast node '{node.name}'")

    def cast(x):
        return x.to(dtype)

    return cast


register("Cast", [6, 9, 13], _cast, replace=True)
