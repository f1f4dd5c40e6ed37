"""ONNX Unique (tf.unique, tf.unique_with_counts) -> torch.unique, with ONNX's four outputs: the unique
values (sorted, or in order of first occurrence), the index of each one's first occurrence, the
inverse indices and the counts. onnx2torch 1.5.15 has no converter."""

from __future__ import annotations

import torch
from onnx2torch.onnx_graph import OnnxGraph
from onnx2torch.onnx_node import OnnxNode
from onnx2torch.utils.common import OperationConverterResult, onnx_mapping_from_node
from torch import nn

from pipeline.torch_worker.converters._functional import register_module


class OnnxUnique(nn.Module):
    """Not traceable by fx (its output sizes depend on the data), so model.pt needs this package."""

    def __init__(self, axis: int | None, sorted_: bool, outputs: int = 4):
        super().__init__()
        self.axis = axis
        self.sorted = sorted_
        self.outputs = outputs  # a node that declares only the values gets a tensor, not a tuple

    def forward(self, x):
        data = x.reshape(-1) if self.axis is None else x
        dim = 0 if self.axis is None else self.axis
        values, inverse, counts = torch.unique(
            data, sorted=True, return_inverse=True, return_counts=True, dim=dim
        )
        positions = torch.arange(inverse.numel(), device=x.device)
        first = torch.full((counts.numel(),), inverse.numel(), dtype=torch.int64, device=x.device)
        first = first.scatter_reduce(0, inverse, positions, "amin")
        if not self.sorted:  # ONNX's unsorted order is the order of first occurrence
            order = torch.argsort(first)
            rank = torch.empty_like(order).scatter_(0, order, torch.arange(order.numel(), device=x.device))
            values = torch.index_select(values, dim, order)
            first, counts, inverse = first[order], counts[order], rank[inverse]
        if self.outputs == 1:
            return values
        return (values, first, inverse, counts)[: self.outputs]


def _convert(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    axis = node.attributes.get("axis")
    outputs = len(node.output_values)
    module = OnnxUnique(None if axis is None else int(axis), bool(node.attributes.get("sorted", 1)), outputs)
    return OperationConverterResult(torch_module=module, onnx_mapping=onnx_mapping_from_node(node))


register_module("Unique", [11], _convert)
