"""Sizes that follow the inputs: a wrapper whose arguments depend on the input shapes (an Expand to
`[batch, 8]`, a Reshape to `[batch, length, heads, 8]`, a Range up to the sequence length) is traced
twice, at the two recorded input sets; the literals that differ between the two traces are written as
expressions over the inputs' sizes (`tokens.size(1)`, `image.size(1) * 4`), so model.py stays dynamic
in every dimension the TF model leaves unknown.

The two input sets give each unknown dimension a value of its own (pipeline/common/inputs.py), which is what
lets a literal be traced back to the one input size it comes from.
"""

from __future__ import annotations

import itertools
import operator
import warnings
from typing import Any

import numpy as np
import torch
from torch import fx, nn
from torch.fx.experimental.meta_tracer import MetaProxy, MetaTracer

from pipeline.torch_worker.native import fxutil


class SizeError(Exception):
    pass


def plain_numbers(a: Any) -> Any:
    """numpy scalars (onnx2torch's Slice computes its bounds with numpy) as Python numbers: fx can
    record only the latter."""
    return a.item() if isinstance(a, np.generic) else a


class InputSizes:
    """The input dimensions that differ between the two recorded input sets, as fx nodes of `gm`
    (`x.size(i)`, made on first use at the top of forward) and integer expressions over them."""

    def __init__(
        self, gm: fx.GraphModule, inputs_a: list[torch.Tensor] | None, inputs_b: list[torch.Tensor] | None
    ):
        self.gm = gm
        placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
        self.dims = [
            (node, axis, x, y)
            for node, a, b in zip(placeholders, inputs_a or [], inputs_b or [], strict=False)
            for axis, (x, y) in enumerate(zip(a.shape, b.shape, strict=False))
            if x != y
        ]
        self._nodes: dict[Any, fx.Node] = {}
        self.created: list[fx.Node] = []  # every node made here, for the caller's bookkeeping

    def express(self, a: int, b: int) -> fx.Node:
        """A node computing the size that is `a` at the first input set and `b` at the second."""
        for key in self._candidates(a, b):
            return self._node(key)
        raise SizeError(f"a size that is {a} at one input shape and {b} at the other follows no input size")

    def _candidates(self, a: int, b: int):
        dims = range(len(self.dims))
        value = [(d[2], d[3]) for d in self.dims]
        for i in dims:  # the size itself
            if value[i] == (a, b):
                yield ("dim", i)
        for i in dims:  # a multiple: a flattened row of `length` vectors of 8
            x, y = value[i]
            if x and a % x == 0 and a // x > 1 and b == (a // x) * y:
                yield ("mul", i, a // x)
        for i in dims:  # an exact fraction: a stride-2 'valid' resize
            x, y = value[i]
            if a and x % a == 0 and x // a > 1 and y == (x // a) * b:
                yield ("div", i, x // a)
        for i, j in itertools.combinations_with_replacement(dims, 2):  # height x width, length²
            (x1, y1), (x2, y2) = value[i], value[j]
            if x1 * x2 and a % (x1 * x2) == 0 and b == (a // (x1 * x2)) * y1 * y2:
                yield ("mul2", i, j, a // (x1 * x2))
        for i in dims:  # an offset: one more than the length
            x, y = value[i]
            if a - x == b - y:
                yield ("add", i, a - x)

    def _node(self, key: tuple) -> fx.Node:
        cached = self._nodes.get(key)
        if cached is not None and not cached._erased:  # tidy() drops the ones no code used
            return cached
        kind = key[0]
        if kind == "dim":
            node, axis, _, _ = self.dims[key[1]]
            made = self._insert("call_method", "size", (node, axis))
        elif kind == "mul2":
            product = self._insert(
                "call_function", operator.mul, (self._node(("dim", key[1])), self._node(("dim", key[2])))
            )
            made = product if key[3] == 1 else self._insert("call_function", operator.mul, (product, key[3]))
        else:
            function = {"mul": operator.mul, "div": operator.floordiv, "add": operator.add}[kind]
            made = self._insert("call_function", function, (self._node(("dim", key[1])), key[2]))
        self._nodes[key] = made
        return made

    def tensor(self, a: torch.Tensor, b: torch.Tensor) -> fx.Node:
        """A node computing the small integer tensor that is `a` at the first input set and `b` at the
        second: `torch.tensor([batch, tokens_dim1, 8])`, on the input's device."""
        if a.shape != b.shape or a.is_floating_point() or a.dtype == torch.bool or a.numel() > 16:
            raise SizeError("a tensor it builds depends on the input shape")
        elements = [
            x if x == y else self.express(x, y)
            for x, y in zip(a.flatten().tolist(), b.flatten().tolist(), strict=True)
        ]
        device = input_device(self.gm)
        self.created.append(device)
        kwargs = {"dtype": a.dtype, "device": device}
        made = self._insert("call_function", torch.tensor, (elements if a.dim() else elements[0],), kwargs)
        if a.dim() > 1:
            made = self._insert("call_method", "reshape", (made, tuple(a.shape)))
        return made

    def _insert(self, op: str, target: Any, args: tuple, kwargs: dict | None = None) -> fx.Node:
        """Right after the latest node it reads (a placeholder, a size or the input's device)."""
        nodes = list(self.gm.graph.nodes)
        last_input = max(i for i, n in enumerate(nodes) if n.op == "placeholder")
        order = {n: i for i, n in enumerate(nodes)}
        read: list[fx.Node] = []
        fx.node.map_arg((args, kwargs or {}), read.append)
        after = max([order[a] for a in read] + [last_input])
        with self.gm.graph.inserting_after(nodes[after]):
            made = self.gm.graph.create_node(op, target, args, kwargs)
        self.created.append(made)
        return made


def shape_values_as_code(
    gm: fx.GraphModule, values_a: dict, values_b: dict, kinds: dict, sizes: InputSizes
) -> int:
    """Every small integer tensor computed from the input shapes alone (tf2onnx's Shape -> Gather ->
    Concat chains) becomes `torch.tensor([batch, length, 8])` over input sizes: code that runs at any
    shape, whether its users read it as a shape or use it as a tensor (a sequence length per row)."""
    done = 0
    for node in list(gm.graph.nodes):
        if kinds.get(node.name) != fxutil.SHAPE or not node.users or node.op == "call_method":
            continue
        a, b = values_a.get(node.name), values_b.get(node.name)
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)) or torch.equal(a, b):
            continue
        try:
            made = sizes.tensor(a, b)
        except SizeError:
            continue
        node.replace_all_uses_with(made)
        kinds[made.name] = fxutil.SHAPE
        done += 1
    return done


def input_device(gm: fx.GraphModule) -> fx.Node:
    """`x.device` of the first input, made once at the top of forward."""
    inputs = [n for n in gm.graph.nodes if n.op == "placeholder"]
    for node in gm.graph.nodes:
        if node.op == "call_function" and node.target is getattr and node.args == (inputs[0], "device"):
            return node
    with gm.graph.inserting_after(inputs[-1]):
        return gm.graph.call_function(getattr, (inputs[0], "device"))


def follow_input_device(gm: fx.GraphModule) -> int:
    """Tensors a converter creates on a fixed device (`torch.arange(n, device="cpu")`, recorded while
    tracing) are created where the input lives instead, so model.py runs on any device."""
    fixed = [
        n
        for n in gm.graph.nodes
        if n.op == "call_function" and isinstance(n.kwargs.get("device"), torch.device)
    ]
    if not fixed:
        return 0
    device = input_device(gm)
    for node in fixed:
        node.kwargs = {**node.kwargs, "device": device}
    return len(fixed)


class _Proxy(MetaProxy):
    def size(self, dim: int | None = None) -> Any:
        # MetaProxy.size(0) returns the whole shape (`if dim` is false for 0).
        meta = getattr(self, "_tensor_meta", None)
        if meta is not None:
            return meta.size() if dim is None else meta.size(dim)
        return super().size(dim)

    def __getattr__(self, k: str) -> Any:
        # What converters branch on: answered from the recorded value's metadata, not traced.
        meta = self.__dict__.get("_tensor_meta")
        if meta is not None and k in _METADATA_METHODS:
            return getattr(meta, k)
        if meta is not None and k == "ndim":
            return meta.ndim
        return super().__getattr__(k)

    def __len__(self) -> int:
        meta = self.__dict__.get("_tensor_meta")
        if meta is None:
            return super().__len__()
        return len(meta)


_METADATA_METHODS = {"is_floating_point", "is_complex", "numel", "element_size", "is_contiguous"}


# Tensor constructors recorded as calls even when every argument is a plain number: `torch.ones(2, 8)`
# built from a bound shape must stay a call whose sizes can become input sizes, not a baked tensor.
_CONSTRUCTORS = ("ones", "zeros", "full", "empty", "arange", "eye", "tensor")


class _Tracer(MetaTracer):
    _TORCH_METHODS_TO_PATCH: list[str] = []

    def __init__(self, is_leaf):
        super().__init__()
        self._is_leaf = is_leaf
        self._inside = False

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return self._is_leaf(m, qualname)

    def proxy(self, node: fx.Node) -> MetaProxy:
        return _Proxy(node, self)

    def create_arg(self, a: Any) -> Any:
        return super().create_arg(plain_numbers(a))

    def trace(self, root, meta_args, concrete_args=None):
        originals = {name: getattr(torch, name) for name in _CONSTRUCTORS}

        def recorder(original):
            def call(*args, **kwargs):
                if self._inside:  # torch's own code computing a meta value: not the wrapper's call
                    return original(*args, **kwargs)
                return self.create_proxy("call_function", original, args, kwargs)

            return call

        for name, original in originals.items():
            setattr(torch, name, recorder(original))
        try:
            graph = super().trace(root, meta_args, concrete_args)
        finally:
            for name, original in originals.items():
                setattr(torch, name, original)
        return graph

    def create_proxy(self, kind, target, args, kwargs, *rest, **more):
        self.orig_fns = set(_CONSTRUCTOR_FUNCTIONS)  # MetaTracer builds their meta values on "meta"
        self._inside = True
        try:
            return super().create_proxy(kind, target, args, kwargs, *rest, **more)
        finally:
            self._inside = False


_CONSTRUCTOR_FUNCTIONS = tuple(getattr(torch, name) for name in _CONSTRUCTORS)


def trace_with_sizes(
    bound_a: nn.Module,
    bound_b: nn.Module,
    metas_a: dict[str, torch.Tensor],
    metas_b: dict[str, torch.Tensor],
    unused: dict[str, None],
    is_leaf,
    sizes: InputSizes,
) -> fx.GraphModule:
    """`bound_a` and `bound_b` (one wrapper with its shape arguments bound to their values at the
    two input sets) traced with the data arguments' shapes and dtypes known; one graph in which every
    literal that differs between the two is a Sizes node of the outer graph (kept as `Outer`)."""
    graphs = []
    for bound, metas in ((bound_a, metas_a), (bound_b, metas_b)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            graph = _Tracer(is_leaf).trace(bound, meta_args=metas, concrete_args=unused)
        graphs.append(fx.GraphModule(bound, graph))
    gm_a, gm_b = graphs
    nodes_a, nodes_b = list(gm_a.graph.nodes), list(gm_b.graph.nodes)
    if len(nodes_a) != len(nodes_b):
        raise SizeError("the code it runs differs between the two input shapes")
    pairs = dict(zip(nodes_b, nodes_a, strict=True))
    replaced: dict[fx.Node, Outer] = {}
    for na, nb in zip(nodes_a, nodes_b, strict=True):
        if (na.op, na.target) != (nb.op, nb.target) and na.op != "get_attr":
            raise SizeError("the code it runs differs between the two input shapes")
        if na.op == "get_attr":
            va, vb = fxutil.attr_of(gm_a, na), fxutil.attr_of(gm_b, nb)
            if isinstance(va, torch.Tensor) and not (
                isinstance(vb, torch.Tensor) and va.shape == vb.shape and torch.equal(va, vb)
            ):
                replaced[na] = Outer(_size_tensor(na, va, vb, sizes))
            continue
        na.args = _merge(na.args, nb.args, pairs, sizes, replaced)
        na.kwargs = _merge(na.kwargs, nb.kwargs, pairs, sizes, replaced)
    return gm_a


def _size_tensor(node: fx.Node, a: torch.Tensor, b: torch.Tensor, sizes: InputSizes) -> fx.Node:
    """A constant the wrapper builds from a shape (onnx2torch's Slice iterates its bounds into 0-d
    tensors): a bound only ever used to index becomes the size itself (`x[:, :tokens_dim1]`), any
    other a tensor built from the sizes."""
    as_index = all(u.op == "call_function" and u.target is operator.getitem for u in node.users)
    if a.dim() == 0 and as_index and not a.is_floating_point() and a.dtype != torch.bool:
        return sizes.express(int(a), int(b))
    return sizes.tensor(a, b)


class Outer:
    """A node of the outer graph standing in a traced graph's arguments until it is inlined."""

    def __init__(self, node: fx.Node):
        self.node = node


def _merge(
    a: Any, b: Any, pairs: dict[fx.Node, fx.Node], sizes: InputSizes, replaced: dict[fx.Node, Outer]
) -> Any:
    if isinstance(a, fx.Node):
        if not isinstance(b, fx.Node) or pairs.get(b) is not a:
            raise SizeError("the code it runs differs between the two input shapes")
        return replaced.get(a, a)
    if isinstance(a, bool) or a is None or isinstance(a, (str, torch.dtype, torch.device)):
        if a != b:
            raise SizeError(f"an argument is {a!r} at one input shape and {b!r} at the other")
        return a
    if isinstance(a, int) and isinstance(b, int):
        return a if a == b else Outer(sizes.express(a, b))
    if isinstance(a, (tuple, list)) and type(a) is type(b) and len(a) == len(b):
        merged = [_merge(x, y, pairs, sizes, replaced) for x, y in zip(a, b, strict=True)]
        return tuple(merged) if isinstance(a, tuple) else merged
    if isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys():
        return {k: _merge(a[k], b[k], pairs, sizes, replaced) for k in a}
    if isinstance(a, slice) and isinstance(b, slice):
        return slice(
            *(
                _merge(x, y, pairs, sizes, replaced)
                for x, y in zip((a.start, a.stop, a.step), (b.start, b.stop, b.step), strict=True)
            )
        )
    if type(a) is type(b) and a == b:
        return a
    raise SizeError(f"an argument is {a!r} at one input shape and {b!r} at the other")


def resolve_outer(nodes: list[fx.Node]) -> None:
    """Replaces the Outer placeholders left in these nodes' arguments by the nodes they stand for."""

    def unwrap(x: Any) -> Any:
        if isinstance(x, Outer):
            return x.node
        if isinstance(x, (tuple, list)):
            inner = [unwrap(v) for v in x]
            return tuple(inner) if isinstance(x, tuple) else inner
        if isinstance(x, dict):
            return {k: unwrap(v) for k, v in x.items()}
        if isinstance(x, slice):
            return slice(unwrap(x.start), unwrap(x.stop), unwrap(x.step))
        return x

    def has_outer(x: Any) -> bool:
        if isinstance(x, Outer):
            return True
        if isinstance(x, (tuple, list)):
            return any(has_outer(v) for v in x)
        if isinstance(x, dict):
            return any(has_outer(v) for v in x.values())
        return isinstance(x, slice) and any(has_outer(v) for v in (x.start, x.stop, x.step))

    for node in nodes:
        if has_outer(node.args) or has_outer(node.kwargs):
            node.args = unwrap(node.args)
            node.kwargs = unwrap(node.kwargs)
