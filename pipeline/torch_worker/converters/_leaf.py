"""onnx2torch's module for an op behind a few traced torch calls that fix its inputs first (a Range
bound, a Pad fill value, a Slice's 0-d starts): the result is a GraphModule of torch and onnx2torch
code only, as every converter's is, so model.pt loads without this package."""

from __future__ import annotations

from collections.abc import Callable

from torch import fx, nn

from pipeline.torch_worker.converters._functional import drop_none_checks

_MAX_INPUTS = 6


class _Prepared(nn.Module):
    def __init__(self, inner: nn.Module, prepare: Callable, count: int):
        super().__init__()
        self.inner = inner
        self.prepare = prepare
        self.count = count

    # Named parameters, not *args: fx would trace *args as one tuple placeholder.
    def forward(self, a0=None, a1=None, a2=None, a3=None, a4=None, a5=None):
        args = (a0, a1, a2, a3, a4, a5)[: self.count]
        return self.inner(*self.prepare(*args))


class _KeepInner(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return qualname == "inner" or super().is_leaf_module(m, qualname)


def behind(inner: nn.Module, prepare: Callable, count: int) -> fx.GraphModule:
    """`inner` called on `prepare(*inputs)`, for a node with `count` inputs."""
    root = _Prepared(inner, prepare, count)
    unused = {f"a{i}": None for i in range(count, _MAX_INPUTS)}
    module = fx.GraphModule(root, _KeepInner().trace(root, concrete_args=unused), type(inner).__name__)
    drop_none_checks(module)
    return module
