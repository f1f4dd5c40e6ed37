"""ONNX Pad in every mode, at every rank (onnx2torch 1.5.15 hands reflect and edge to torch's
functional.pad, which pads only the last one to three dimensions of a 3-D to 5-D input, has no
`wrap` mode, and its converter lacks opset 18's `axes` input).

constant: functional.pad (negative pads crop). reflect, edge, wrap: each padded axis is gathered
with an index computed from the axis length, which works for any rank and any axis; tf2onnx writes
reflect for `tf.pad(mode='REFLECT')` and builds SYMMETRIC from it. The pads (and axes) must be
constants of the graph for this. Pads computed at run time (tf2onnx writes them for shapes it does not
know): reflect, edge and wrap gather by the same index, computed as the graph runs; constant mode goes
to onnx2torch's opset 13 converter (an opset 18 node rewritten into that form), with the fill value
handed over as the number functional.pad takes.
"""

from __future__ import annotations

import torch
from onnx2torch.utils.common import OperationConverterResult
from torch.nn import functional

from pipeline.torch_worker.converters._functional import (
    RuntimeValue,
    constant,
    register,
    register_module,
    registered,
    result,
    static_shape,
)
from pipeline.torch_worker.converters._leaf import behind
from pipeline.torch_worker.converters._opset13 import rewritten
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


# onnx2torch's own converter, before this module replaces it: pads computed at run time
_ONNX2TORCH_PAD = registered("Pad", 13)


def _at_run_time(node, graph):
    names = list(node.input_values)
    if len(names) > 3 and names[3]:
        raise NotConvertible(f"Pad node '{node.name}': an `axes` input with pads computed at run time")
    mode = node.attributes.get("mode", "constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode != "constant":
        return result(_indexed_at_run_time(node, graph, mode), node)
    converted = _ONNX2TORCH_PAD(rewritten(node, names[:3], set()), graph)
    if len(names) > 2 and names[2]:
        # onnx2torch hands the constant_value tensor to functional.pad, which takes a number only
        return OperationConverterResult(_scalar_fill(converted.torch_module), converted.onnx_mapping)
    return converted


def _indexed_at_run_time(node, graph, mode: str):
    """reflect, edge and wrap with pads known at run time, at any rank (functional.pad pads only the
    last dimensions in these modes): each axis gathered at arange(-before, length + after), mapped
    into the axis; negative pads crop by the same formula."""
    shape = static_shape(node.input_values[0], graph)
    pads_shape = static_shape(node.input_values[1], graph)
    if shape is not None:
        rank = len(shape)
    elif pads_shape and pads_shape[0] is not None:
        rank = pads_shape[0] // 2
    else:
        raise NotConvertible(f"Pad node '{node.name}': {mode} pads at run time on an input of unknown rank")

    def indexed_pad(x, pads, value=None):
        for axis in range(rank):
            index = _axis_index(x.shape[axis], pads[axis], pads[axis + rank], mode, x.device)
            x = x.index_select(axis, index)
        return x

    return indexed_pad


def _fill_as_number(x, pads, value):
    return x, pads, value.reshape(()).item()


def _scalar_fill(pad: torch.nn.Module) -> torch.fx.GraphModule:
    return behind(pad, _fill_as_number, 3)


register_module("Pad", [11, 13, 18], _at_run_time, replace=True)
register("Pad", [11, 13, 18], _convert, replace=True)
