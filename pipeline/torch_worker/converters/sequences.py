"""ONNX sequence ops, which onnx2torch 1.5.15 lacks: tf2onnx writes them for TensorArray-style code
(TensorListReserve/SetItem/Stack in a while loop: SequenceEmpty, SequenceInsert in the Loop body,
ConcatFromSequence after it).

A sequence is a Python list of tensors. Each op is a small fx graph of Python's own list operations
and torch calls (slicing, `+`, `len`, torch.cat/stack/split), built node by node where tracing cannot
see through a list, so model.pt holds torch and Python code only. Positions may be 0-d tensors:
Python indexes lists with them.
"""

from __future__ import annotations

import operator

import torch
from onnx2torch.utils.common import OnnxMapping, OperationConverterResult
from torch import fx, nn

from pipeline.torch_worker.converters._functional import constant, present_inputs, register_module


def _module(build, node, inputs: int) -> OperationConverterResult:
    """A GraphModule whose graph `build(graph, *placeholders)` fills; returns its result node."""
    graph = fx.Graph()
    args = [graph.placeholder(f"x{i}") for i in range(inputs)]
    graph.output(build(graph, *args))
    names = present_inputs(node)
    return OperationConverterResult(
        torch_module=fx.GraphModule(nn.Module(), graph, node.operation_type),
        onnx_mapping=OnnxMapping(inputs=tuple(names), outputs=node.output_values),
    )


def _sequence_empty(node, graph):
    return _module(lambda g: g.call_function(list, ()), node, 0)


def _sequence_construct(node, graph):
    return _module(
        lambda g, *tensors: g.call_function(list, (tuple(tensors),)), node, len(present_inputs(node))
    )


def _sequence_insert(node, graph):
    if len(present_inputs(node)) == 2:  # at the end
        return _module(lambda g, seq, t: g.call_function(operator.add, (seq, [t])), node, 2)

    def build(g, seq, t, position):
        length = g.call_function(len, (seq,))
        at = g.call_function(
            operator.mod, (g.call_function(int, (position,)), g.call_function(operator.add, (length, 1)))
        )
        before = g.call_function(operator.getitem, (seq, g.call_function(slice, (None, at))))
        after = g.call_function(operator.getitem, (seq, g.call_function(slice, (at, None))))
        return g.call_function(operator.add, (g.call_function(operator.add, (before, [t])), after))

    return _module(build, node, 3)


def _sequence_at(node, graph):
    def build(g, seq, position):
        return g.call_function(operator.getitem, (seq, g.call_function(int, (position,))))

    return _module(build, node, 2)


def _sequence_length(node, graph):
    def build(g, seq):
        return g.call_function(torch.tensor, (g.call_function(len, (seq,)),), {"dtype": torch.int64})

    return _module(build, node, 1)


def _sequence_erase(node, graph):
    def build(g, seq, position=None):
        length = g.call_function(len, (seq,))
        at = (
            g.call_function(operator.sub, (length, 1))
            if position is None
            else g.call_function(operator.mod, (g.call_function(int, (position,)), length))
        )
        before = g.call_function(operator.getitem, (seq, g.call_function(slice, (None, at))))
        after = g.call_function(
            operator.getitem, (seq, g.call_function(slice, (g.call_function(operator.add, (at, 1)), None)))
        )
        return g.call_function(operator.add, (before, after))

    return _module(build, node, len(present_inputs(node)))


def _concat_from_sequence(node, graph):
    axis = int(node.attributes["axis"])
    join = torch.stack if int(node.attributes.get("new_axis", 0)) else torch.cat
    return _module(lambda g, seq: g.call_function(join, (seq, axis)), node, 1)


def _split_to_sequence(node, graph):
    axis = int(node.attributes.get("axis", 0))
    keepdims = int(node.attributes.get("keepdims", 1))
    inputs = present_inputs(node)
    if len(inputs) == 1:
        if keepdims:
            return _module(
                lambda g, x: g.call_function(list, (g.call_function(torch.split, (x, 1, axis)),)), node, 1
            )
        return _module(
            lambda g, x: g.call_function(list, (g.call_function(torch.unbind, (x, axis)),)), node, 1
        )
    split = constant(node, graph, 1)
    sizes = int(split) if split.dim() == 0 else [int(s) for s in split.tolist()]

    def build(g, x, _split):
        return g.call_function(list, (g.call_function(torch.split, (x, sizes, axis)),))

    return _module(build, node, 2)


register_module("SequenceEmpty", [11], _sequence_empty)
register_module("SequenceConstruct", [11], _sequence_construct)
register_module("SequenceInsert", [11], _sequence_insert)
register_module("SequenceAt", [11], _sequence_at)
register_module("SequenceLength", [11], _sequence_length)
register_module("SequenceErase", [11], _sequence_erase)
register_module("ConcatFromSequence", [11], _concat_from_sequence)
register_module("SplitToSequence", [11], _split_to_sequence)
