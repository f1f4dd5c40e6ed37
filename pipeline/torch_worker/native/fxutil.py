"""Small torch.fx helpers the passes share: recorded values, constants, module lookup, inlining."""

from __future__ import annotations

import re
import warnings
from typing import Any

import torch
from torch import fx, nn

# How a value depends on the model's inputs: constants only, only the inputs' shapes, or their data.
CONST, SHAPE, DATA = 0, 1, 2


class Recorder(fx.Interpreter):
    """Runs the module and keeps every node's output by node name."""

    def __init__(self, gm: fx.GraphModule):
        super().__init__(gm, garbage_collect_values=False)
        self.values: dict[str, Any] = {}

    def run_node(self, n: fx.Node) -> Any:
        value = super().run_node(n)
        self.values[n.name] = value
        return value


def record(gm: fx.GraphModule, args: list[torch.Tensor]) -> dict[str, Any]:
    recorder = Recorder(gm)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        recorder.run(*args)
    return recorder.values


def dependencies(gm: fx.GraphModule, nodes=None, kinds: dict[str, int] | None = None) -> dict[str, int]:
    """CONST, SHAPE or DATA for every node (or for `nodes`, adding to `kinds`): a Shape op turns
    DATA into SHAPE."""
    kinds = {} if kinds is None else kinds
    for node in gm.graph.nodes if nodes is None else nodes:
        inputs = [kinds[a.name] for a in node.all_input_nodes]
        if node.op == "placeholder":
            kinds[node.name] = DATA
        elif node.op == "get_attr":
            kinds[node.name] = CONST
        elif (
            node.op == "call_function"
            and node.target is getattr
            and node.args[1:] in (("device",), ("dtype",))
        ):
            kinds[node.name] = CONST  # where the data lives, not what it holds
        elif is_shape_op(gm, node):
            kinds[node.name] = min(SHAPE, max(inputs, default=CONST))
        else:
            kinds[node.name] = max(inputs, default=CONST)
    return kinds


def is_shape_op(gm: fx.GraphModule, node: fx.Node) -> bool:
    """A node whose value depends on its inputs' shapes only: onnx2torch's Shape, a traced converter
    whose graph reads only shapes (this package's Shape and Size), `x.size()`, `x.shape`."""
    if node.op == "call_module":
        module = module_of(gm, node)
        if type(module).__name__ == "OnnxShape":
            return True
        if isinstance(module, fx.GraphModule):
            kinds = dependencies(module)
            outputs = [n for n in module.graph.nodes if n.op == "output"]
            return bool(outputs) and all(kinds[a.name] <= SHAPE for a in outputs[0].all_input_nodes)
        return False
    if node.op == "call_method":
        return node.target in ("size", "dim")
    if node.op == "call_function":
        return node.target in (torch._shape_as_tensor, torch.numel) or (
            node.target is getattr and node.args[1:] == ("shape",)
        )
    return False


def module_of(gm: fx.GraphModule, node: fx.Node) -> nn.Module:
    return gm.get_submodule(node.target)


def attr_of(gm: fx.GraphModule, node: fx.Node) -> Any:
    value: Any = gm
    for part in node.target.split("."):
        value = getattr(value, part)
    return value


def constant(gm: fx.GraphModule, arg: Any) -> torch.Tensor | None:
    """The tensor behind a get_attr argument, or None."""
    if isinstance(arg, fx.Node) and arg.op == "get_attr":
        value = attr_of(gm, arg)
        return value if isinstance(value, torch.Tensor) else None
    return None


def add_constant(gm: fx.GraphModule, value: torch.Tensor, hint: str) -> str:
    """Registers `value` as a buffer of the root under a fresh name; returns that name."""
    name = fresh_name(gm, hint)
    gm.register_buffer(name, value.detach().clone())
    return name


def fresh_name(gm: nn.Module, hint: str) -> str:
    """An attribute name `gm` does not have yet (dir() lists its submodules, parameters and buffers)."""
    return unique_name(hint, set(dir(gm)), "_")


def unique_name(hint: str, taken: set[str], prefix: str) -> str:
    """A Python identifier from `hint`, not in `taken` (which it joins); `prefix` if it starts with a digit."""
    base = re.sub(r"\W", "_", hint).strip("_") or "value"
    if base[0].isdigit():
        base = prefix + base
    name, i = base, 1
    while name in taken:
        name, i = f"{base}_{i}", i + 1
    taken.add(name)
    return name


def inline(gm: fx.GraphModule, node: fx.Node, sub: fx.GraphModule, args: list[Any]) -> fx.Node | None:
    """Replaces the call `node` with the nodes of `sub`'s graph, fed with `args`; returns the node now
    standing for the call's result (None if the subgraph returns a constant)."""
    env: dict[fx.Node, Any] = {}
    placeholders = iter(args)
    result: Any = None
    with gm.graph.inserting_before(node):
        for sub_node in sub.graph.nodes:
            if sub_node.op == "placeholder":
                env[sub_node] = next(placeholders, None)
            elif sub_node.op == "output":
                result = fx.node.map_arg(sub_node.args[0], lambda n: env[n])
            elif sub_node.op == "call_function" and sub_node.target is torch._assert:
                continue
            elif sub_node.op == "get_attr":
                value = attr_of(sub, sub_node)
                as_self = any(u.op == "call_method" and u.args[0] is sub_node for u in sub_node.users)
                if (
                    isinstance(value, torch.Tensor)
                    and value.dim() == 0
                    and not value.is_floating_point()
                    and value.dtype != torch.bool
                    and not as_self
                ):
                    env[sub_node] = value.item()  # a traced index or dim: a Python number in code
                    continue
                name = fresh_name(gm, sub_node.target)
                if isinstance(value, nn.Parameter):
                    gm.register_parameter(name, value)
                elif isinstance(value, torch.Tensor):
                    gm.register_buffer(name, value)
                else:
                    setattr(gm, name, value)
                env[sub_node] = gm.graph.get_attr(name)
            elif sub_node.op == "call_module":
                name = fresh_name(gm, sub_node.target.split(".")[-1])
                gm.add_submodule(name, sub.get_submodule(sub_node.target))
                copy = gm.graph.node_copy(sub_node, lambda n: env[n])
                copy.target = name
                env[sub_node] = copy
            else:
                env[sub_node] = gm.graph.node_copy(sub_node, lambda n: env[n])
    if isinstance(result, fx.Node):
        node.replace_all_uses_with(result)
    elif result is not None:
        # A tuple result: the call's users index it with getitem; give them the element itself.
        for user in list(node.users):
            if user.op == "call_function" and user.target.__name__ == "getitem":
                user.replace_all_uses_with(result[user.args[1]])
                gm.graph.erase_node(user)
    if not node.users:
        gm.graph.erase_node(node)
    return result if isinstance(result, fx.Node) else None


def tidy(gm: fx.GraphModule) -> None:
    """Drops dead nodes, then submodules and attributes nothing uses any more, and recompiles."""
    gm.graph.eliminate_dead_code()
    used = {n.target for n in gm.graph.nodes if n.op in ("call_module", "get_attr")}
    for name, _ in list(gm.named_children()):
        if not any(t == name or t.startswith(name + ".") for t in used):
            delattr(gm, name)
    for name in list(gm._buffers) + list(gm._parameters):
        if name not in used:
            delattr(gm, name)
    gm.recompile()
