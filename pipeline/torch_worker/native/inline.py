"""Replace onnx2torch's wrapper modules by the torch code they run.

Each wrapper is traced on its own with its constant arguments bound (a Reshape's target, a Pad's pads,
a Squeeze's axes), so fx records the plain torch call it makes with those values, and that code takes
the wrapper's place. Nested GraphModules (the LSTM converter's) and Sequentials (onnx2torch's
Pad+Conv) are opened up the same way. torch.nn modules stay modules.
"""

from __future__ import annotations

import itertools
import operator
import warnings
from typing import Any

import torch
from torch import fx, nn

from pipeline.torch_worker.native import fxutil, sizes
from pipeline.torch_worker.native.context import PassContext


class _Bound(nn.Module):
    """Calls `inner` with its constant arguments fixed; only the data arguments remain inputs."""

    def __init__(self, inner: nn.Module, pattern: list[tuple[str, Any]]):
        super().__init__()
        self.inner = inner
        # A plain list, not buffers: fx must see real tensors here to specialise on their values.
        self.pattern = pattern

    def call(self, data: tuple) -> Any:
        args = [data[value] if kind == "data" else value for kind, value in self.pattern]
        return self.inner(*args)


def _bound(inner: nn.Module, pattern: list[tuple[str, Any]], count: int) -> _Bound:
    """A _Bound whose forward takes `count` named data arguments d0, d1, ...: fx makes one input of
    each named parameter (*args would be one tuple), and a Concat may have any number of them."""
    names = [f"d{i}" for i in range(count)]
    parameters = ", ".join(["self", *(f"{n}=None" for n in names)])
    data = "".join(f"{n}, " for n in names)
    source = f"def forward({parameters}):\n    return self.call(({data}))\n"
    namespace: dict[str, Any] = {}
    exec(compile(source, f"<bound forward, {count} inputs>", "exec"), namespace)  # noqa: S102 - our own text
    kind = type(f"_Bound{count}", (_Bound,), {"forward": namespace["forward"]})
    return kind(inner, pattern)


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        # torch.nn modules stay calls; wrappers of onnx2torch and this package are traced through.
        return type(m).__module__.startswith("torch.nn") and not isinstance(m, nn.Sequential)

    def create_arg(self, a: Any) -> Any:
        return super().create_arg(sizes.plain_numbers(a))


def is_wrapper(module: nn.Module) -> bool:
    """Any module but torch.nn's own layers: onnx2torch's and this package's converters, nested
    GraphModules and Sequentials, and whatever else a graph calls."""
    kind = type(module).__module__
    return (
        not kind.startswith("torch.nn")
        or isinstance(module, (fx.GraphModule, nn.Sequential))
        or (type(module) is nn.Module)
    )


def drop_zero_states(gm: fx.GraphModule, ctx: PassContext) -> list[str]:
    """An LSTM started from all-zero states computed at run time is started with no states (nn.LSTM's
    default): removes the Shape -> Expand chain that built them."""
    from pipeline.torch_worker.converters.lstm import rebuild_without_states

    lstms = [
        n
        for n in gm.graph.nodes
        if n.op == "call_module" and "tf2torch_lstm" in getattr(fxutil.module_of(gm, n), "meta", {})
    ]
    if not lstms:
        return []
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
    notes: dict[str, str] = {}
    done = 0
    input_sizes = sizes.InputSizes(gm, ctx.inputs_a, ctx.inputs_b)
    if input_sizes.dims:
        values_a, values_b = ctx.values(gm)
        sizes.shape_values_as_code(gm, values_a, values_b, fxutil.dependencies(gm), input_sizes)
        fxutil.tidy(gm)
    for _ in range(8):  # wrappers inside wrappers: repeat until nothing changes
        changed = False
        kinds = fxutil.dependencies(gm)
        recorded: list = []  # the values at both input sets, recorded when a wrapper needs them
        for node in list(gm.graph.nodes):
            if node.op != "call_module" or not is_wrapper(fxutil.module_of(gm, node)):
                continue

            def values(node=node, recorded=recorded):
                if not recorded or any(a.name not in recorded[0] for a in node.all_input_nodes):
                    recorded[:] = ctx.values(gm)
                return recorded

            before, after = node.prev, node.next
            traced, data_args, why = _trace(gm, node, values, kinds, input_sizes)
            if traced is None:
                notes[node.name] = f"{node.name} ({type(fxutil.module_of(gm, node)).__name__}): {why}"
                continue
            fxutil.inline(gm, node, traced, data_args)
            inserted = _between(before, after)
            sizes.resolve_outer(inserted)
            # the sizes it reads (made at the top of forward) first, then the inlined code
            made = [n for n in input_sizes.created if not n._erased and n.name not in kinds]
            fxutil.dependencies(gm, [*made, *inserted], kinds)
            done += 1
            changed = True
        fxutil.tidy(gm)
        if not changed:
            break
    done += _pass_through_helpers(gm, ctx)
    if any(n.op == "placeholder" for n in gm.graph.nodes):
        sizes.follow_input_device(gm)
        fxutil.tidy(gm)
    ctx.count("inline_wrappers", done)
    present = {n.name for n in gm.graph.nodes}
    for name, note in notes.items():
        if name in present:
            ctx.reasons[name] = note.split(": ", 1)[1]
    return sorted(note for name, note in notes.items() if name in present)


def _pass_through_helpers(gm: fx.GraphModule, ctx: PassContext) -> int:
    """Small Python helpers a converter kept out of the trace (`torch.fx.wrap`), such as onnx2torch's
    `_get_element(x, 0)`, replaced by what they do on the recorded values at both input sets: return
    an argument unchanged, or one element of it."""
    helpers = [
        n
        for n in gm.graph.nodes
        if n.op == "call_function"
        and not getattr(n.target, "__module__", "").startswith(("torch", "_operator", "builtins"))
    ]
    if not helpers or ctx.inputs_a is None:
        return 0
    runs = ctx.values(gm)
    done = 0
    for node in helpers:
        choices = []
        for values in runs:
            args = [values.get(a.name) if isinstance(a, fx.Node) else a for a in node.args]
            result = node.target(*args, **node.kwargs)
            choices.append(_which_argument(node.args, args, result))
        if choices[0] is None or choices[0] != choices[1]:
            continue
        position, index = choices[0]
        replacement = node.args[position]
        if index is not None:
            with gm.graph.inserting_before(node):
                replacement = gm.graph.call_function(operator.getitem, (replacement, index))
        node.replace_all_uses_with(replacement)
        gm.graph.erase_node(node)
        done += 1
    fxutil.tidy(gm)
    return done


def _which_argument(nodes, args, result) -> tuple[int, int | None] | None:
    for position, (node, value) in enumerate(zip(nodes, args, strict=True)):
        if not isinstance(node, fx.Node):
            continue
        if result is value:
            return position, None
        if isinstance(value, (tuple, list)):
            for index, element in enumerate(value):
                if result is element:
                    return position, index
    return None


def _between(first: fx.Node, stop: fx.Node) -> list[fx.Node]:
    """The nodes after `first` up to, not including, `stop` (what an inlining inserted)."""
    nodes, node = [], first.next
    while node is not stop and node.op != "root":
        nodes.append(node)
        node = node.next
    return nodes


def _trace(gm, node, values, kinds, input_sizes):
    """The wrapper as plain torch code: traced with its constant arguments bound; where an argument
    depends on the input shapes, or the wrapper branches on its inputs' dtype or rank, traced at
    both input sets with their shapes known and the differing sizes written as input sizes."""
    shaped = any(
        isinstance(a, fx.Node) and kinds[a.name] != fxutil.DATA and fxutil.constant(gm, a) is None
        for a in node.args
    )
    why = ""
    if not shaped:
        traced, data_args, why = _trace_bound(gm, node)
        if traced is not None:
            return traced, data_args, why
    # A value computed from the input shapes is bound to its value where the wrapper reads it as a
    # shape (Reshape's target); where it uses it as a tensor (Expand of a sequence length, Gather's
    # indices from a Range), it stays an input, computed by the code the earlier wrappers became.
    # Constants bound first; where that bakes a tensor of one input shape's size, traced as inputs.
    choices = _data_choices(gm, node, kinds) if shaped else [set()]
    for weights, as_data in itertools.product((_NO_CONSTANTS, _WEIGHTS, _ALL_CONSTANTS), choices):
        try:
            traced, data_args = _trace_two_shapes(gm, node, *values(), kinds, input_sizes, as_data, weights)
        except Exception as exc:
            why = why or f"cannot be traced to plain torch code ({type(exc).__name__}: {str(exc)[:120]})"
            continue
        return traced, data_args, None
    return None, [], why


def _data_choices(gm, node, kinds) -> list[set[int]]:
    """Which shape-valued arguments (by position) to pass as tensors: none first, then each subset."""
    shaped = [
        i
        for i, a in enumerate(node.args)
        if isinstance(a, fx.Node)
        and kinds[a.name] == fxutil.SHAPE
        and a.op != "call_module"
        and fxutil.constant(gm, a) is None
    ]
    if len(shaped) > 3:
        return [set(), set(shaped)]
    return [set(c) for r in range(len(shaped) + 1) for c in itertools.combinations(shaped, r)]


# Which constant arguments a wrapper is traced with as inputs rather than values: none (converters
# read Slice's bounds, Resize's scales in Python), the weights and masks, or all of them (MinMax
# broadcasts a scalar bound to its other input's shape in Python).
_NO_CONSTANTS, _WEIGHTS, _ALL_CONSTANTS = 0, 1, 2


def _is_data(gm, node, i, kinds, as_data, weights=_NO_CONSTANTS) -> bool:
    arg = node.args[i]
    if not isinstance(arg, fx.Node):
        return False
    value = fxutil.constant(gm, arg)
    if value is not None:
        return weights == _ALL_CONSTANTS or (weights == _WEIGHTS and _is_tensor_data(value))
    return kinds[arg.name] == fxutil.DATA or i in as_data


def _is_tensor_data(value: torch.Tensor) -> bool:
    """A weight or a mask constant is traced as an input: bound as a value, the wrapper's work on it
    (the position table sliced to the sequence length, a True expanded to the mask's shape) would run
    at trace time and leave a tensor of one input shape's size. Small integer constants (Slice's
    bounds, axes) stay bound, as converters read them in Python."""
    return value.is_floating_point() or value.dtype == torch.bool or value.numel() > 16


def _trace_two_shapes(
    gm, node, values_a, values_b, kinds, input_sizes, as_data=frozenset(), weights=_NO_CONSTANTS
) -> tuple[fx.GraphModule, list[fx.Node]]:
    """The traced wrapper and the outer nodes its data inputs are, in order."""
    if node.kwargs:
        raise sizes.SizeError("called with keyword arguments")
    module = fxutil.module_of(gm, node)
    bound, metas, data_args = [], [], []
    for values in (values_a, values_b):
        pattern: list[tuple[str, Any]] = []
        meta: dict[str, torch.Tensor] = {}
        data_args = []
        for i, arg in enumerate(node.args):
            value = fxutil.constant(gm, arg)
            recorded = value if value is not None else values.get(getattr(arg, "name", None))
            # A shape-derived tensor that is not a short list of sizes (a relative-position matrix,
            # a causal mask) is computed at run time, by the code its wrappers became.
            if _is_data(gm, node, i, kinds, as_data, weights) or (
                value is None and isinstance(recorded, torch.Tensor) and _is_tensor_data(recorded)
            ):
                if not isinstance(recorded, torch.Tensor):
                    raise sizes.SizeError(f"input {arg.name} is not a tensor")
                meta[f"d{len(meta)}"] = recorded.to("meta")
                pattern.append(("data", len(meta) - 1))
                data_args.append(arg)
            elif value is not None or not isinstance(arg, fx.Node):
                pattern.append(("const", value if value is not None else arg))
            else:
                pattern.append(("const", recorded))  # a shape: bound to its value at this input set
        bound.append((module, pattern))
        metas.append(meta)
    count = max(len(m) for m in metas)
    bound = [_bound(module, pattern, count) for module, pattern in bound]
    unused = {f"d{i}": None for i in range(len(metas[0]), count)}
    traced = sizes.trace_with_sizes(*bound, *metas, unused, _Tracer().is_leaf_module, input_sizes)
    return traced, data_args


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
    bound = _bound(fxutil.module_of(gm, node), pattern, len(data_args))
    unused: dict[str, None] = {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            graph = _Tracer().trace(bound, concrete_args=unused)
    except Exception as exc:  # data-dependent Python control flow and the like
        return None, [], f"cannot be traced to plain torch code ({type(exc).__name__}: {str(exc)[:80]})"
    return fx.GraphModule(bound, graph), data_args, None


def _all_zero(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(value.any())
