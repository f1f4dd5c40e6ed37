"""Last pass: names and roles. Modules are named after the Keras layers they came from (else after
their type), weights become nn.Parameters and everything else buffers, and the forward's values are
named after what computes them."""

from __future__ import annotations

import re

import numpy as np
import torch
from torch import fx, nn

from pipeline.torch_worker.native import fxutil, layers
from pipeline.torch_worker.native.context import PassContext


def parameters_and_names(gm: fx.GraphModule, ctx: PassContext) -> list[str]:
    modules: dict[int, str] = {}
    attrs: dict[str, str] = {}
    children: list[tuple[str, nn.Module]] = []
    tensors: list[tuple[str, torch.Tensor, bool]] = []
    taken: set[str] = set()
    trainable = _trainable_arrays(ctx)
    notes = []
    for node in gm.graph.nodes:
        if node.op == "call_module":
            module = fxutil.module_of(gm, node)
            if id(module) not in modules:
                hint = module.__dict__.get(layers.LAYER) or _snake(module)
                modules[id(module)] = fxutil.unique_name(hint, taken, "layer_")
                children.append((modules[id(module)], module))
                _freeze_untrainable(module, ctx)
            node.target = modules[id(module)]
            _rename(node, node.target, ctx)
        elif node.op == "get_attr":
            if node.target not in attrs:
                value = fxutil.attr_of(gm, node)
                source = _tf_source(value, trainable) if ctx.tf_variables is not None else None
                is_weight = _is_weight(value)
                hint = (
                    source[0].replace("/", "_")
                    if source
                    else f"{_consumer(node)}_{'weight' if is_weight else 'const'}"
                )
                attrs[node.target] = fxutil.unique_name(hint, taken, "layer_")
                if source:
                    ctx.sources[attrs[node.target]] = source
                tensors.append((attrs[node.target], value, is_weight))
                if is_weight and source is None and ctx.tf_variables is not None:
                    notes.append(f"{attrs[node.target]}: a weight no Keras variable explains; kept a buffer")
            node.target = attrs[node.target]
            _rename(node, node.target, ctx)
    for name in list(gm._modules):
        delattr(gm, name)
    for name in list(gm._parameters) + list(gm._buffers):
        delattr(gm, name)
    for name, module in children:
        gm.add_module(name, module)
    for name, value, is_weight in tensors:
        if is_weight and (ctx.tf_variables is None or name in ctx.sources):
            gm.register_parameter(name, nn.Parameter(value.detach().clone()))
        else:
            gm.register_buffer(name, value.detach().clone())
    gm.recompile()
    return notes


def _rename(node: fx.Node, name: str, ctx: PassContext) -> None:
    """Renames the node; what the passes found out about it (ctx.reasons) follows the new name."""
    old = node.name
    node._rename(name)
    if old in ctx.reasons and node.name != old:
        ctx.reasons[node.name] = ctx.reasons.pop(old)


def _is_weight(value) -> bool:
    """Float initializers that feed compute; shape and index constants are integers."""
    return isinstance(value, torch.Tensor) and value.is_floating_point() and value.numel() > 1


def _trainable_arrays(ctx: PassContext) -> list[tuple[np.ndarray, str]]:
    return [(v.value, v.path) for v in ctx.tf_variables or [] if v.trainable]


def _tf_source(value, trainable) -> tuple[str, str] | None:
    if not isinstance(value, torch.Tensor) or not value.is_floating_point():
        return None
    array = value.detach().numpy()
    if np.all(array == array.flat[0]):
        return None  # all one value (a fresh layer scale, a zero bias) tells no variable from another
    for candidate, path in trainable:
        if candidate.size == array.size > 1 and np.array_equal(candidate.reshape(array.shape), array):
            same_shape = candidate.shape == array.shape
            return path, "none" if same_shape else f"reshape{tuple(array.shape)}"
    return None


def _freeze_untrainable(module: nn.Module, ctx: PassContext) -> None:
    frozen = {v.path for v in ctx.tf_variables or [] if not v.trainable}
    for param_name, (path, _) in module.__dict__.get(layers.SOURCE, {}).items():
        param = getattr(module, param_name)
        if isinstance(param, nn.Parameter) and path in frozen:
            param.requires_grad_(False)


def _consumer(node: fx.Node) -> str:
    user = next(iter(node.users), None)
    return str(user.target) if user is not None and user.op == "call_module" else "value"


def _snake(module: nn.Module) -> str:
    name = type(module).__name__
    return _ACRONYMS.get(name) or re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


_ACRONYMS = {"ReLU": "relu", "ReLU6": "relu6", "GELU": "gelu", "SiLU": "silu", "ELU": "elu",
             "LeakyReLU": "leaky_relu", "LSTM": "lstm", "GRU": "gru"}  # fmt: skip
