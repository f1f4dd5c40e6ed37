"""Tensor ops onnx2torch 1.5.15 lacks or gets wrong in some attribute mode, each written to the ONNX
spec as a traced function: CumSum (exclusive, reverse, the input's dtype), TopK (ties keep the lower
index first), NonZero ([rank, count]), OneHot, Compress, SpaceToDepth, DepthToSpace (DCR and CRD),
Flatten (any axis), Clip (either bound omitted or computed), Range (empty where the step points
away from the limit), Slice (0-d starts computed at run time), Shape (dtype, start > end),
Pow (integer base), Reshape (allowzero), GatherElements (negative indices), Dropout (inference),
MatMulInteger (int32, zero points per row and column)."""

from __future__ import annotations

import math

import torch
from onnx2torch.node_converters.range import OnnxRange
from onnx2torch.utils.common import OnnxMapping, OperationConverterResult, onnx_mapping_from_node

from pipeline.torch_worker.converters._functional import (
    RuntimeValue,
    constant,
    present_inputs,
    register,
    register_module,
    registered,
    result,
)
from pipeline.torch_worker.converters._leaf import behind
from pipeline.torch_worker.converters.refusal import NotConvertible


def _cumsum(node, graph):
    exclusive = bool(node.attributes.get("exclusive", 0))
    reverse = bool(node.attributes.get("reverse", 0))
    dim = int(constant(node, graph, 1).reshape(-1)[0])

    def cumsum(x, axis):
        y = torch.flip(x, [dim]) if reverse else x
        total = torch.cumsum(y, dim).to(x.dtype)
        if exclusive:
            total = total - y
        return torch.flip(total, [dim]) if reverse else total

    return cumsum


def _top_k(node, graph):
    axis = int(node.attributes.get("axis", -1))
    largest = bool(node.attributes.get("largest", 1))
    count = int(constant(node, graph, 1).reshape(-1)[0])

    def top_k(x, k):
        # a stable sort keeps equal values in index order, as ONNX requires; torch.topk does not
        values, indices = torch.sort(x, dim=axis, descending=largest, stable=True)
        return values.narrow(axis, 0, count), indices.narrow(axis, 0, count)

    return top_k


def _non_zero(node, graph):
    def non_zero(x):
        return torch.nonzero(x).t()

    return non_zero


def _one_hot(node, graph):
    axis = int(node.attributes.get("axis", -1))
    size = int(constant(node, graph, 1).reshape(-1)[0])

    def one_hot(indices, depth, values):
        index = indices.to(torch.int64)
        index = torch.where(index < 0, index + size, index)
        valid = (index >= 0) & (index < size)
        hot = torch.nn.functional.one_hot(torch.where(valid, index, torch.zeros_like(index)), size)
        hot = hot * valid.unsqueeze(-1).to(hot.dtype)
        result = torch.where(hot.bool(), values[1], values[0])
        return torch.movedim(result, -1, axis)

    return one_hot


def _compress(node, graph):
    axis = node.attributes.get("axis")

    def compress(x, condition):
        flat = x.reshape(-1) if axis is None else x
        dim = 0 if axis is None else int(axis)
        keep = torch.nonzero(condition.reshape(-1)).reshape(-1)
        keep = keep[keep < flat.shape[dim]]
        return torch.index_select(flat, dim, keep)

    return compress


def _space_to_depth(node, graph):
    block = int(node.attributes["blocksize"])

    def space_to_depth(x):
        n, c, h, w = x.shape
        y = x.reshape(n, c, h // block, block, w // block, block)
        return y.permute(0, 3, 5, 1, 2, 4).reshape(n, c * block * block, h // block, w // block)

    return space_to_depth


def _depth_to_space(node, graph):
    block = int(node.attributes["blocksize"])
    mode = node.attributes.get("mode", "DCR")
    mode = mode.decode() if isinstance(mode, bytes) else mode

    def depth_to_space(x):
        n, c, h, w = x.shape
        depth = c // (block * block)
        if mode == "DCR":
            y = x.reshape(n, block, block, depth, h, w).permute(0, 3, 4, 1, 5, 2)
        else:
            y = x.reshape(n, depth, block, block, h, w).permute(0, 1, 4, 2, 5, 3)
        return y.reshape(n, depth, h * block, w * block)

    return depth_to_space


def _flatten(node, graph):
    axis = int(node.attributes.get("axis", 1))
    if axis < 0:
        rank = _rank(node.input_values[0], graph)
        if rank is None:
            return None
        axis += rank

    def flatten(x):
        return x.reshape(1, -1) if axis == 0 else torch.flatten(x.unsqueeze(-1), axis).flatten(0, axis - 1)

    return flatten


def _rank(name: str, graph) -> int | None:
    info = graph.value_info.get(name)
    if info is None or not info.type.tensor_type.HasField("shape"):
        return None
    return len(info.type.tensor_type.shape.dim)


def _clip(node, graph):
    def clip(x, min=None, max=None):  # noqa: A002 - onnx2torch passes omitted inputs by these names
        if min is not None:
            x = torch.maximum(x, min.to(x.dtype))
        if max is not None:
            x = torch.minimum(x, max.to(x.dtype))
        return x

    return clip


def _range(node, graph):
    # ONNX's Range is empty where the step points away from the limit (a matrix band with no
    # diagonal above the main one); torch.arange raises there.
    try:
        start, limit, delta = (constant(node, graph, i) for i in range(3))
    except RuntimeValue:
        return OperationConverterResult(
            torch_module=_run_time_range(), onnx_mapping=onnx_mapping_from_node(node)
        )
    count = max(math.ceil((limit.item() - start.item()) / delta.item()), 0)
    values = start + torch.arange(count, dtype=start.dtype) * delta

    def range_(start, limit, delta):
        return values.clone()

    return result(range_, node)


def _empty_when_behind(start, limit, delta):
    # a limit behind the start (for this step's sign) becomes the start: an empty range
    ahead = (limit - start) * delta > 0
    return start, torch.where(ahead, limit, start), delta


def _run_time_range():
    """onnx2torch's OnnxRange (it reads the bounds with .item(), which fx cannot trace) behind the
    empty-range guard."""
    return behind(OnnxRange(), _empty_when_behind, 3)


def _slice(node, graph):
    """Slice with starts or ends computed at run time may get them 0-d (tf2onnx's crop_and_resize
    Loop slices at its iteration counter); onnxruntime takes that, onnx2torch's Slice calls len() on
    them. Constant ones keep onnx2torch's converter as it is."""
    names = present_inputs(node)
    try:
        for index in range(1, len(names)):
            constant(node, graph, index)
    except RuntimeValue:
        inner = _ONNX2TORCH_SLICE(node, graph)
        module = behind(inner.torch_module, _index_inputs_1d, len(names))
        return OperationConverterResult(module, OnnxMapping(inputs=tuple(names), outputs=node.output_values))
    return _ONNX2TORCH_SLICE(node, graph)


def _index_inputs_1d(x, *index):
    return (x, *(i.reshape(-1) for i in index))


def _shape(node, graph):
    start = int(node.attributes.get("start", 0))
    end = node.attributes.get("end")
    stop = None if end is None else int(end)

    def shape(x):
        # Python slicing clamps and handles negative bounds as ONNX's start/end do
        return torch._shape_as_tensor(x)[start:stop]

    return shape


def _size(node, graph):
    def size(x):
        return torch.ones_like(x, dtype=torch.int64).sum()

    return size


def _pow(node, graph):
    def pow_(x, y):
        return torch.pow(x, y).to(x.dtype)

    return pow_


def _reshape(node, graph):
    if not node.attributes.get("allowzero", 0):
        return None  # onnx2torch's converter: 0 copies the input's dimension
    dims = [int(d) for d in constant(node, graph, 1).tolist()]

    def reshape(x, shape):
        return x.reshape(dims)

    return reshape


def _gather_elements(node, graph):
    axis = int(node.attributes.get("axis", 0))

    def gather_elements(x, indices):
        index = indices.to(torch.int64)
        index = torch.where(index < 0, index + x.shape[axis], index)
        return torch.gather(x, axis, index)

    return gather_elements


def _matmul_integer(node, graph):
    # (A - a_zero_point) @ (B - b_zero_point) in int32, as ONNX defines it; A's zero point is per row
    # (or one for all), B's per column
    def matmul_integer(a, b, a_zero_point=None, b_zero_point=None):
        a = a.to(torch.int32)
        b = b.to(torch.int32)
        if a_zero_point is not None:
            a = a - a_zero_point.to(torch.int32).reshape(-1, 1)
        if b_zero_point is not None:
            b = b - b_zero_point.to(torch.int32).reshape(-1)
        return torch.matmul(a, b)

    return matmul_integer


def _dropout(node, graph):
    try:
        training = constant(node, graph, 2)
        ratio = constant(node, graph, 1)
    except RuntimeValue:
        training, ratio = torch.tensor(True), torch.tensor(0.5)
    if training is not None and bool(training) and (ratio is None or float(ratio) != 0):
        raise NotConvertible(
            f"Dropout node '{node.name}': training_mode is on; tf2onnx exports inference graphs "
            "and a random mask cannot be checked against another runtime"
        )

    def dropout(x, ratio=None, training_mode=None):
        return x, torch.ones_like(x, dtype=torch.bool)

    if len(node.output_values) == 1:

        def dropout(x, ratio=None, training_mode=None):  # noqa: F811 - the single-output form
            return x

    return dropout


register("CumSum", [11, 14], _cumsum, replace=True)
register("TopK", [1, 10, 11], _top_k, replace=True)
register("NonZero", [9, 13], _non_zero, replace=True)
register("OneHot", [9, 11], _one_hot)
register("Compress", [9, 11], _compress)
register("SpaceToDepth", [1, 13], _space_to_depth)
register("DepthToSpace", [11, 13], _depth_to_space, replace=True)
register("Flatten", [1, 9, 11, 13], _flatten, replace=True)
register("Clip", [11, 12, 13], _clip, replace=True)
register_module("Range", [11], _range, replace=True)
_ONNX2TORCH_SLICE = registered("Slice", 13)
register_module("Slice", [10, 11, 13], _slice, replace=True)
register("Shape", [1, 13, 15], _shape, replace=True)
register("Size", [1, 13], _size)
register("Pow", [12, 13, 15], _pow, replace=True)
register("Reshape", [14], _reshape, replace=True)
register("GatherElements", [11, 13], _gather_elements, replace=True)
register("Dropout", [12, 13], _dropout, replace=True)
register("MatMulInteger", [10], _matmul_integer)


class SequenceIdentity(torch.nn.Module):
    """Identity of a sequence (a list of tensors) or an optional value: a new list, the same tensors."""

    def forward(self, x):
        return x if x is None or isinstance(x, torch.Tensor) else list(x)


def _identity(tensor_identity):
    def convert(node, graph):
        info = graph.value_info.get(node.input_values[0])
        if info is None or info.type.WhichOneof("value") == "tensor_type":
            return tensor_identity(node, graph)  # onnx2torch's: a clone
        return OperationConverterResult(
            torch_module=SequenceIdentity(), onnx_mapping=onnx_mapping_from_node(node)
        )

    return convert


for _version in (1, 13, 14, 16):
    register_module("Identity", [_version], _identity(registered("Identity", _version)), replace=True)
