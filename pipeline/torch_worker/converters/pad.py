"""ONNX Pad in every mode, at every rank (onnx2torch 1.5.15 hands reflect and edge to torch's
functional.pad, which pads only the last one to three dimensions of a 3-D to 5-D input, has no
`wrap` mode, and its converter lacks opset 18's `axes` input).

constant: functional.pad (negative pads crop). reflect, edge, wrap: each padded axis is gathered
with an index computed from the axis length, which works for any rank and any axis; tf2onnx writes
reflect for `tf.pad(mode='REFLECT')` and builds SYMMETRIC from it. The pads (and axes) must be
constants of the graph for this; pads computed at run time (tf2onnx writes them for shapes it does
not know) go to onnx2torch's opset 13 converter, an opset 18 node rewritten into that form.
"""

from __future__ import annotations

import torch
from torch.nn import functional

from pipeline.torch_worker.converters._functional import (
    RuntimeValue,
    constant,
    register,
    register_module,
    static_shape,
)
from pipeline.torch_worker.converters._opset13 import opset13_converter, rewritten
from pipeline.torch_worker.converters.refusal import NotConvertible


def _axis_index(length, before: int, after: int, mode: str, device):
    """Positions, in an axis of `length`, that the padded axis reads."""
    index = torch.arange(-before, length + after, device=device)
    if mode == "edge":
        return index.clamp(0, length - 1)
    if mode == "wrap":
        return torch.remainder(index, length)
    period = 2 * (length - 1)  # reflect: ... 2 1 | 0 1 2 ... n-1 | n-2 n-3 ...
    folded = torch.remainder(index, period)
    return torch.where(folded >= length, period - folded, folded)


def _pad_function(mode: str, begins: list[int], ends: list[int]):
    rank = len(begins)

    def constant_pad(x, pads=None, value=None, axes=None):
        spec = []
        for axis in reversed(range(rank)):  # functional.pad takes the last dimension first
            spec += [begins[axis], ends[axis]]
        fill = 0.0 if value is None else value.reshape(()).item()
        return functional.pad(x, spec, mode="constant", value=fill)

    def indexed_pad(x, pads=None, value=None, axes=None):
        for axis in range(rank):
            before, after = begins[axis], ends[axis]
            if before < 0 or after < 0:  # negative pads crop first
                start, stop = max(0, -before), x.shape[axis] - max(0, -after)
                x = x.narrow(axis, start, stop - start)
                before, after = max(0, before), max(0, after)
            if before or after:
                x = x.index_select(axis, _axis_index(x.shape[axis], before, after, mode, x.device))
        return x

    return constant_pad if mode == "constant" else indexed_pad


def _convert(node, graph):
    mode = node.attributes.get("mode", "constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    pads = constant(node, graph, 1)
    if pads is None:
        raise RuntimeValue("Pad without pads")
    pads = [int(p) for p in pads.tolist()]
    axes = constant(node, graph, 3)
    if axes is None:
        rank = len(pads) // 2
        axes = list(range(rank))
    else:
        shape = static_shape(node.input_values[0], graph)
        if shape is None:
            raise RuntimeValue("Pad with `axes` on an input of unknown rank")
        rank = len(shape)
        axes = [int(a) % rank for a in axes.tolist()]
    begins, ends = [0] * rank, [0] * rank
    for i, axis in enumerate(axes):
        begins[axis], ends[axis] = pads[i], pads[i + len(axes)]
    return _pad_function(mode, begins, ends)


def _as_opset13(node, graph):
    names = list(node.input_values)
    if len(names) > 3 and names[3]:
        raise NotConvertible(f"Pad node '{node.name}': an `axes` input with pads computed at run time")
    return opset13_converter("Pad")(rewritten(node, names[:3], set()), graph)


register_module("Pad", [18], _as_opset13)
register("Pad", [11, 13, 18], _convert, replace=True)
