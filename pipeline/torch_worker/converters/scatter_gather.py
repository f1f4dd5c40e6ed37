"""ScatterElements and ScatterND with every reduction (none, add, mul, max, min) and negative indices,
and GatherND with batch_dims: tf2onnx emits them for tf.tensor_scatter_nd_* / tf.scatter_nd,
tf.gather_nd (batch_dims) and tf.gather with batch_dims. onnx2torch 1.5.15 has no ScatterElements and
handles neither reductions nor batch_dims."""

from __future__ import annotations

import torch

from pipeline.torch_worker.converters._functional import RuntimeValue, register, static_shape

_REDUCE = {"add": "sum", "mul": "prod", "max": "amax", "min": "amin"}


def _reduction(node) -> str:
    value = node.attributes.get("reduction", "none")
    return value.decode() if isinstance(value, bytes) else value


def _scatter_elements(node, graph):
    axis = int(node.attributes.get("axis", 0))
    reduction = _reduction(node)

    def scatter_elements(data, indices, updates):
        index = indices.to(torch.int64)
        index = torch.where(index < 0, index + data.shape[axis], index)
        if reduction == "none":
            return torch.scatter(data, axis, index, updates)
        return torch.scatter_reduce(data, axis, index, updates, _REDUCE[reduction], include_self=True)

    return scatter_elements


def _index_shape(node, graph) -> tuple[int, int]:
    """The rank of the node's indices and their last dimension (the index depth), both needed statically."""
    shape = static_shape(node.input_values[1], graph)
    if not shape or shape[-1] is None:
        raise RuntimeValue("the indices' rank and last dimension are unknown before run time")
    return len(shape), shape[-1]


def _row_numbers(index, sizes):
    """Row-major row numbers of index tuples over dimensions `sizes` (a tensor), negatives wrapped."""
    index = torch.where(index < 0, index + sizes, index)
    ones = torch.ones_like(sizes[:1])
    strides = torch.flip(torch.cumprod(torch.flip(torch.cat([sizes[1:], ones]), [0]), 0), [0])
    return (index * strides).sum(-1)


def _scatter_nd(node, graph):
    reduction = _reduction(node)
    index_rank, depth = _index_shape(node, graph)
    data_shape = static_shape(node.input_values[0], graph)
    if data_shape is None:
        raise RuntimeValue("the data's rank is unknown before run time")
    row_rank = len(data_shape) - depth + 1

    def scatter_nd(data, indices, updates):
        # data's first `depth` dimensions become one row axis; each index tuple names one row
        rows = data.unsqueeze(0) if depth == 0 else data.flatten(0, depth - 1)
        sizes = torch._shape_as_tensor(data)[:depth]
        flat = _row_numbers(indices.to(torch.int64), sizes).reshape(-1)
        values = updates.flatten(0, index_rank - 2) if index_rank > 1 else updates.unsqueeze(0)
        target = flat.reshape([-1] + [1] * (row_rank - 1)).expand_as(values)
        if reduction == "none":
            out = torch.scatter(rows, 0, target, values)
        else:
            out = torch.scatter_reduce(rows, 0, target, values, _REDUCE[reduction], include_self=True)
        return out.reshape(data.shape)

    return scatter_nd


def _gather_nd(node, graph):
    batch_dims = int(node.attributes.get("batch_dims", 0))
    if batch_dims == 0:
        return None  # onnx2torch's converter
    index_rank, depth = _index_shape(node, graph)

    def gather_nd(data, indices):
        batch = data.flatten(0, batch_dims - 1)  # [B, d1, ..., rest]
        index = indices.flatten(0, batch_dims - 1).to(torch.int64)  # [B, ..., depth]
        sizes = torch._shape_as_tensor(batch)[1 : 1 + depth]
        rows = _row_numbers(index, sizes)  # [B, ...]
        table = batch.flatten(1, depth)  # [B, rows, rest...]
        which = (
            torch.arange(table.shape[0]).reshape([-1] + [1] * (index_rank - batch_dims - 1)).expand_as(rows)
        )
        gathered = table[which, rows]
        return gathered.unflatten(0, [indices.shape[i] for i in range(batch_dims)])

    return gather_nd


register("ScatterElements", [11, 13, 16, 18], _scatter_elements)
register("ScatterND", [11, 13, 16, 18], _scatter_nd, replace=True)
register("GatherND", [11, 12, 13], _gather_nd, replace=True)
