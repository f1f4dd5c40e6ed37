"""Constant folding over static dims, and reshapes rewritten from the shapes they produce.

Values are recorded on two input sets that differ only in the batch size. A node that depends on
constants, or on the inputs' shapes alone, and takes the same value in both runs does not depend on the
batch: it becomes a constant (the Shape -> Gather -> Concat chains tf2onnx emits for Flatten). A reshape
whose target still depends on the batch is rewritten from what it does in both runs.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import fx

from pipeline.torch_worker.native import fxutil
from pipeline.torch_worker.native.context import PassContext


def fold_constants(gm: fx.GraphModule, ctx: PassContext) -> list[str]:
    kinds = fxutil.dependencies(gm)
    a, b = ctx.values(gm)
    folded = 0
    for node in list(gm.graph.nodes):
        if node.op not in ("call_module", "call_function", "call_method"):
            continue
        if kinds[node.name] == fxutil.DATA or not node.users:
            continue
        value_a, value_b = a.get(node.name), b.get(node.name)
        if not (isinstance(value_a, torch.Tensor) and _same(value_a, value_b)):
            continue
        name = fxutil.add_constant(gm, value_a, f"{node.name}_const")
        with gm.graph.inserting_before(node):
            node.replace_all_uses_with(gm.graph.get_attr(name))
        folded += 1
    fxutil.tidy(gm)
    ctx.count("fold_constants", folded)
    return []


def reshape_by_shape(gm: fx.GraphModule, ctx: PassContext) -> list[str]:
    """OnnxReshape/OnnxFlatten with a batch-dependent target -> torch.flatten or reshape(-1, ...)."""
    a, b = ctx.values(gm)
    done = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or type(fxutil.module_of(gm, node)).__name__ not in _RESHAPES:
            continue
        data = node.args[0]
        if len(node.args) > 1 and fxutil.constant(gm, node.args[1]) is not None:
            continue  # a constant target: the generic inlining turns it into torch.reshape
        call = _rewrite(tuple(a[data.name].shape), tuple(a[node.name].shape), tuple(b[node.name].shape))
        if call is None:  # more than one size varies: inline_wrappers writes it over the input sizes
            continue
        with gm.graph.inserting_before(node):
            target, args = call
            new = gm.graph.call_function(target, (data, *args))
        node.replace_all_uses_with(new)
        gm.graph.erase_node(node)
        done += 1
    fxutil.tidy(gm)
    ctx.count("reshape_by_shape", done)
    return []


_RESHAPES = ("OnnxReshape", "OnnxFlatten")


def _rewrite(shape_in: tuple, out_a: tuple, out_b: tuple) -> tuple[Any, tuple] | None:
    if len(out_a) != len(out_b):
        return None
    varying = [i for i, (x, y) in enumerate(zip(out_a, out_b, strict=True)) if x != y]
    if not varying:
        return torch.reshape, (out_a,)
    if len(varying) != 1:
        return None
    if varying == [0] and len(out_a) == 2 and len(shape_in) >= 2 and out_a[1] == math.prod(shape_in[1:]):
        return torch.flatten, (1,)
    target = tuple(-1 if i == varying[0] else d for i, d in enumerate(out_a))
    return torch.reshape, (target,)


def _same(x: torch.Tensor, y: Any) -> bool:
    return (
        isinstance(y, torch.Tensor) and x.shape == y.shape and x.dtype == y.dtype and bool(torch.equal(x, y))
    )
