"""Replace onnx2torch's wrapper modules by the torch code they run.

Each wrapper is traced on its own with its constant arguments bound (a Reshape's target, a Pad's pads,
a Squeeze's axes), so fx records the plain torch call it makes with those values, and that code takes
the wrapper's place. Nested GraphModules (the LSTM converter's) and Sequentials (onnx2torch's
Pad+Conv) are opened up the same way. torch.nn modules stay modules.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import fx, nn

from pipeline.native import fxutil
from pipeline.native.context import PassContext


class _Bound(nn.Module):
    """Calls `inner` with its constant arguments fixed; only the data arguments remain inputs."""

    def __init__(self, inner: nn.Module, pattern: list[tuple[str, Any]]):
        super().__init__()
        self.inner = inner
        # A plain list, not buffers: fx must see real tensors here to specialise on their values.
        self.pattern = pattern

    # Named parameters, not *args: fx would trace *args as one tuple placeholder.
    def forward(self, d0=None, d1=None, d2=None, d3=None, d4=None, d5=None, d6=None, d7=None):
        data = (d0, d1, d2, d3, d4, d5, d6, d7)
        args = [data[value] if kind == "data" else value for kind, value in self.pattern]
        return self.inner(*args)


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        # torch.nn modules stay calls; wrappers of onnx2torch and this package are traced through.
        return type(m).__module__.startswith("torch.nn") and not isinstance(m, nn.Sequential)


def is_wrapper(module: nn.Module) -> bool:
    kind = type(module).__module__
    return (
        kind.startswith(("onnx2torch.", "pipeline."))
        or isinstance(module, (fx.GraphModule, nn.Sequential))
        or (type(module) is nn.Module)
    )


def drop_zero_states(gm: fx.GraphModule, ctx: PassContext) -> list[str]:
    """An LSTM started from all-zero states computed at run time is started with no states (nn.LSTM's
    default): removes the Shape -> Expand chain that built them."""
    from pipeline.converters.lstm import rebuild_without_states

    a, b = ctx.values(gm)
    dropped = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or len(node.args) < 2:
            continue
        module = fxutil.module_of(gm, node)
        if "tf2torch_lstm" not in getattr(module, "meta", {}):
            continue
        states = node.args[1:]
        if all(_all_zero(a.get(s.name)) and _all_zero(b.get(s.name)) for s in states if s is not None):
            setattr(gm, node.target, rebuild_without_states(module))
            node.args = node.args[:1]
            dropped += 1
    fxutil.tidy(gm)
    ctx.count("drop_zero_states", dropped)
    return []


def inline_wrappers(gm: fx.GraphModule, ctx: PassContext) -> list[str]:
    notes, done = [], 0
    for _ in range(8):  # wrappers inside wrappers: repeat until nothing changes
        changed = False
        for node in list(gm.graph.nodes):
            if node.op != "call_module" or not is_wrapper(fxutil.module_of(gm, node)):
                continue
            traced, data_args, why = _trace_bound(gm, node)
            if traced is None:
                notes.append(f"{node.name} ({type(fxutil.module_of(gm, node)).__name__}): {why}")
                continue
            fxutil.inline(gm, node, traced, data_args)
            done += 1
            changed = True
        fxutil.tidy(gm)
        if not changed:
            break
    ctx.count("inline_wrappers", done)
    return sorted(set(notes))


def _trace_bound(gm: fx.GraphModule, node: fx.Node):
    if node.kwargs:
        return None, [], "called with keyword arguments"
    pattern: list[tuple[str, Any]] = []
    data_args: list[Any] = []
    for arg in node.args:
        value = fxutil.constant(gm, arg)
        if value is not None:
            pattern.append(("const", value))
        elif isinstance(arg, fx.Node) or arg is None:
            pattern.append(("data", len(data_args)))
            data_args.append(arg)
        else:
            pattern.append(("const", arg))
    if len(data_args) > _MAX_DATA_ARGS:
        return None, [], f"more than {_MAX_DATA_ARGS} inputs computed at run time"
    bound = _Bound(fxutil.module_of(gm, node), pattern)
    unused = {f"d{i}": None for i in range(len(data_args), _MAX_DATA_ARGS)}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            graph = _Tracer().trace(bound, concrete_args=unused)
    except Exception as exc:  # data-dependent Python control flow and the like
        return None, [], f"cannot be traced to plain torch code ({type(exc).__name__}: {str(exc)[:80]})"
    return fx.GraphModule(bound, graph), data_args, None


_MAX_DATA_ARGS = 8


def _all_zero(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(value.any())
