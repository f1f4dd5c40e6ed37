"""Keras Dropout layers back in model.py as nn.Dropout: active in train mode, nothing in eval.

The inference graph tf2onnx exports has no trace of dropout, so the place is found by value: the
stage load records each Dropout layer's input at one sample, and nn.Dropout goes after the node of
model.py that computes that value (in Keras's layout or channels first), for every consumer of it.
A Dropout whose input other layers read too cannot be placed that way (by value, the consumers that
read through the Dropout are not told apart from those that do not): it is named, not guessed.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import fx, nn

from pipeline.torch_worker.native import fxutil
from pipeline.torch_worker.native.context import PassContext
from pipeline.torch_worker.native.layers import tag


def dropouts(gm: fx.GraphModule, ctx: PassContext) -> list[str]:
    if not ctx.dropouts:
        return []
    values, _ = ctx.values(gm)
    notes, done = [], 0
    nodes = [n for n in gm.graph.nodes if n.op not in ("placeholder", "output", "get_attr")]
    for dropout in ctx.dropouts:
        if dropout.value is None:
            notes.append(f"{dropout.layer}: its input has other consumers too; not restored")
            continue
        node = last_node_with(nodes, values, dropout.value)
        if node is None:
            notes.append(f"{dropout.layer}: no node of model.py computes its input; not restored")
            continue
        module = nn.Dropout(dropout.rate)
        tag(module, dropout.layer, {})
        name = fxutil.fresh_name(gm, dropout.layer)
        gm.add_submodule(name, module)
        with gm.graph.inserting_after(node):
            call = gm.graph.call_module(name, (node,))
        node.replace_all_uses_with(call, delete_user_cb=lambda user, keep=call: user is not keep)
        done += 1
    gm.recompile()
    ctx.count("dropouts", done)
    return notes


def _same(value: torch.Tensor, expected: torch.Tensor) -> bool:
    return value.shape == expected.shape and torch.allclose(value, expected, rtol=1e-5, atol=1e-6)


def last_node_with(nodes: list[fx.Node], values: dict, expected: np.ndarray) -> fx.Node | None:
    wanted = [torch.from_numpy(np.ascontiguousarray(expected))]
    if expected.ndim >= 3:  # channels first, as model.py computes images and sequences of features
        wanted.append(wanted[0].movedim(-1, 1))
    found = None
    for node in nodes:
        value = values.get(node.name)
        if (
            isinstance(value, torch.Tensor)
            and value.is_floating_point()
            and any(_same(value, w) for w in wanted)
        ):
            found = node
    return found
