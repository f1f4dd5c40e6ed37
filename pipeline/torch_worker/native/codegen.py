"""model.py: the native module as standalone code (torch only), with its weights in model.safetensors.

`__init__` constructs each submodule from its repr (torch.nn's reprs are their constructor calls) and
declares the tensors; `forward` is the fx graph, one line per node, named after what computes it.
Anything that cannot be written this way raises CodegenError with the node.
"""

from __future__ import annotations

import builtins
import inspect
import keyword
import math
import operator
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from pipeline.torch_worker.native import control_flow, exportable_rnn, fxutil
from pipeline.torch_worker.native.zero_pad_conv import ZeroPadConv2d


class CodegenError(Exception):
    """What model.py could not be written for: one line per node, `node (what): why`."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        super().__init__(f"{len(problems)} node(s) have no plain-torch form: {shown}")


class _Unwritable(CodegenError):
    def __init__(self, why: str):
        Exception.__init__(self, why)
        self.problems = [why]


def missing_forms(gm: fx.GraphModule, reasons: dict[str, str] | None = None) -> list[str]:
    """Every node model.py cannot be written for, with the reason (`reasons`: what the passes found
    out about a node, by node name)."""
    reasons = reasons or {}
    problems = []
    for node in gm.graph.nodes:
        why = None
        if node.op == "call_module":
            module = gm.get_submodule(node.target)
            if control_flow.is_control_flow(module):
                for attr, body in control_flow.bodies(module):
                    prefix = f"{node.target}.{attr}."
                    inner = {k.removeprefix(prefix): v for k, v in reasons.items() if k.startswith(prefix)}
                    problems += [f"{node.name}.{attr}.{p}" for p in missing_forms(body, inner)]
            elif type(module) not in NATIVE_CLASSES:
                why = f"{type(module).__name__}: " + reasons.get(node.name, "no torch.nn equivalent")
        elif node.op != "placeholder":
            try:
                _statement(node, {n.name: n.name for n in gm.graph.nodes})
            except CodegenError as exc:
                why = str(exc)
        if why is not None:
            problems.append(f"{node.name} ({why})")
    return problems


# torch.nn classes whose repr is a valid constructor call (checked again by loading model.py).
NATIVE_CLASSES = {
    nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d,
    nn.LayerNorm, nn.ReLU, nn.ReLU6, nn.Sigmoid, nn.Tanh, nn.Softmax, nn.GELU, nn.SiLU, nn.Hardswish,
    nn.Hardsigmoid, nn.Hardtanh, nn.LeakyReLU, nn.ELU, nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.ZeroPad2d, nn.Dropout, nn.Flatten, nn.Identity, nn.LSTM, nn.GRU, nn.Embedding, nn.RMSNorm,
    exportable_rnn.ExportableGRU, exportable_rnn.ExportableLSTM, ZeroPadConv2d,
}  # fmt: skip
# Every activation module torch.nn has (Softplus, Softsign, SELU, CELU, Mish, PReLU, LogSoftmax, ...):
# their constructor arguments are attributes of the same name, which _constructor_call writes.
NATIVE_CLASSES |= {
    cls
    for cls in vars(nn.modules.activation).values()
    if isinstance(cls, type)
    and issubclass(cls, nn.Module)
    and cls.__module__ == nn.modules.activation.__name__
    and cls is not nn.MultiheadAttention
}

_OPERATORS = {
    operator.add: "+", operator.sub: "-", operator.mul: "*", operator.truediv: "/",
    operator.matmul: "@", operator.pow: "**", operator.floordiv: "//", operator.mod: "%",
    operator.eq: "==", operator.ne: "!=", operator.lt: "<", operator.le: "<=", operator.gt: ">",
    operator.ge: ">=", operator.and_: "&", operator.or_: "|",
}  # fmt: skip


def generate(
    gm: fx.GraphModule,
    class_name: str,
    input_names: list[str],
    header: list[str],
) -> str:
    problems = missing_forms(gm)
    if problems:
        raise CodegenError(problems)
    extra: dict[str, list[str]] = {}  # classes model.py needs besides the model's own, by name
    main = _class_source(gm, class_name, input_names, extra)
    code = [line for block in extra.values() for line in (*block, "", "")] + main
    uses_f = any("F." in line for line in code)
    lines = [*(f"# {h}" if h else "#" for h in header), "", "import torch"]
    lines += ["import torch.nn.functional as F"] if uses_f else []
    lines += ["from torch import nn", "", ""] + code
    return "\n".join(lines) + "\n"


def _class_source(gm: fx.GraphModule, class_name: str, input_names: list[str], extra: dict) -> list[str]:
    names = _value_names(gm, input_names)
    init = ["        super().__init__()"]
    for name, module in gm.named_children():
        init.append(f"        self.{name} = {_construct(name, module, class_name, extra)}")
        for param_name, param in module.named_parameters():
            if not param.requires_grad:
                init.append(
                    f"        self.{name}.{param_name}.requires_grad_(False)  # frozen: no trainable TF variable behind it"
                )
    for name, param in gm.named_parameters(recurse=False):
        init.append(f"        self.{name} = nn.Parameter(torch.empty({_shape(param)}, dtype={param.dtype}))")
    for name, buffer in gm.named_buffers(recurse=False):
        init.append(
            f'        self.register_buffer("{name}", torch.empty({_shape(buffer)}, dtype={buffer.dtype}))'
        )
    body = [_statement(node, names) for node in gm.graph.nodes if node.op not in ("placeholder",)]
    args = ", ".join(names[n.name] for n in gm.graph.nodes if n.op == "placeholder")
    lines = [f"class {class_name}(nn.Module):", "    def __init__(self):", *init, ""]
    lines += [f"    def forward(self, {args}):", *(f"        {line}" for line in body if line)]
    return lines


def _construct(name: str, module: nn.Module, owner: str = "", extra: dict | None = None) -> str:
    exportable = _EXPORTABLE.get(type(module))
    if exportable is not None and extra is not None:
        # nn.GRU / nn.LSTM as model.py's own subclass (same parameters) that torch.export takes at any
        # sequence length; its repr is its constructor call.
        name = _EXPORTABLE_NAMES[exportable]
        for helper in (exportable_rnn._time_steps, exportable_rnn._scan):
            extra.setdefault(helper.__name__, inspect.getsource(helper).rstrip("\n").splitlines())
        extra.setdefault(name, _renamed_class_source(exportable, name))
        return f"{name}({module.extra_repr()})"
    if type(module) in _OWN_CLASSES and extra is not None:
        # This package's nn subclass, written into model.py as it is (it imports only torch).
        extra.setdefault(type(module).__name__, _renamed_class_source(type(module), type(module).__name__))
        return _constructor_call(module, prefix="")
    if type(module) in NATIVE_CLASSES:
        return _constructor_call(module)
    if control_flow.is_control_flow(module) and extra is not None:
        # Each body as a class of its own, run by the Loop or If class (this package's, written out).
        class_name, arguments, body_names = control_flow.CLASSES[type(module).__name__]
        written = []
        for argument in arguments:
            if argument not in body_names:
                written.append(repr(getattr(module, argument)))
                continue
            body = getattr(module, argument)
            camel = "".join(part[:1].upper() + part[1:] for part in f"{name}_{argument}".split("_"))
            body_class = fxutil.unique_name(owner + camel, set(extra), "Body")
            extra[body_class] = []  # reserve the name before nested bodies take theirs
            placeholders = [n.name for n in body.graph.nodes if n.op == "placeholder"]
            extra[body_class] = _class_source(body, body_class, placeholders, extra)
            written.append(f"{body_class}()")
        extra.setdefault(class_name, _control_flow_class_source(type(module), class_name))
        return f"{class_name}({', '.join(written)})"
    raise CodegenError([f"submodule '{name}' is a {type(module).__module__}.{type(module).__name__}"])


def _constructor_call(module: nn.Module, prefix: str = "nn.") -> str:
    """`nn.AvgPool2d(kernel_size=3, count_include_pad=False)`: every constructor argument the module
    keeps as an attribute of the same name, where it differs from the default. (A repr is no
    constructor: AvgPool2d's leaves count_include_pad out.)"""
    cls = type(module)
    parameters = list(inspect.signature(cls.__init__).parameters.items())[1:]
    if any(p.kind == p.VAR_POSITIONAL for _, p in parameters):
        return prefix + repr(module).replace("\n", " ")  # nn.LSTM(*args): its repr lists every argument
    args = []
    for name, parameter in parameters:
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD) or name.startswith("_"):
            continue
        if name in ("device", "dtype"):
            continue
        if not hasattr(module, name):
            if parameter.default is parameter.empty:
                raise _Unwritable(f"{cls.__name__} keeps no attribute for its argument '{name}'")
            continue
        value = getattr(module, name)
        if name == "bias" and (value is None or isinstance(value, torch.Tensor)):
            value = value is not None  # the constructor takes whether there is one
        if (
            isinstance(value, (tuple, list))
            and value
            and all(type(v) is int and v == value[0] for v in value)
        ):
            value = value[0]  # kernel_size=3 rather than (3, 3): every torch.nn constructor takes both
        if parameter.default is not parameter.empty and _same(value, parameter.default):
            continue
        written = _format(value, {})
        # Required arguments positionally, as people write them: nn.Conv2d(1, 32, 3, stride=2).
        required = parameter.default is parameter.empty and all("=" not in a for a in args)
        args.append(written if required else f"{name}={written}")
    return f"{prefix}{cls.__name__}({', '.join(args)})"


def _same(value: Any, default: Any) -> bool:
    try:
        return type(value) is type(default) and bool(value == default)
    except Exception:
        return False


_CONTROL_FLOW_DOCS = {
    "Loop": "ONNX Loop: runs `body` until the trip count or its condition ends it, carrying the loop state\n"
    "    and stacking the scan outputs along a new first axis.",
    "If": "ONNX If: runs the branch the condition picks (torch.cond under torch.export and torch.compile).",
}


def _control_flow_class_source(cls: type, name: str) -> list[str]:
    """The converter's own class as model.py's, renamed: one implementation for model.pt and model.py."""
    lines = _renamed_class_source(cls, name)
    return [lines[0], f'    """{_CONTROL_FLOW_DOCS[name]}"""', "", *lines[1:]]


def _renamed_class_source(cls: type, name: str) -> list[str]:
    source = inspect.getsource(cls).replace(f"class {cls.__name__}(", f"class {name}(")
    return source.rstrip("\n").splitlines()


_EXPORTABLE = {
    nn.GRU: exportable_rnn.ExportableGRU,
    nn.LSTM: exportable_rnn.ExportableLSTM,
    exportable_rnn.ExportableGRU: exportable_rnn.ExportableGRU,
    exportable_rnn.ExportableLSTM: exportable_rnn.ExportableLSTM,
}
_OWN_CLASSES = {ZeroPadConv2d}
_EXPORTABLE_NAMES = {exportable_rnn.ExportableGRU: "GRU", exportable_rnn.ExportableLSTM: "LSTM"}


def _shape(t: torch.Tensor) -> str:
    return repr(tuple(t.shape))


def _value_names(gm: fx.GraphModule, input_names: list[str]) -> dict[str, str]:
    """Inputs keep the model's names and tensors read from `self` their attribute's; computed values
    are `x`, `x_1`, ... as a person writes them: a value takes over the name of its first input when
    that input is not read again (`x = self.conv(x)`), so a chain reuses one name and each branch
    alive at the same time has its own. Dropping the dead values as it goes is also what lets
    forward reuse their memory instead of keeping every intermediate tensor until it returns."""
    names: dict[str, str] = {}
    taken = set(keyword.kwlist) | set(dir(builtins)) | {"self", "torch", "nn", "F"}
    nodes = list(gm.graph.nodes)
    placeholders = [n for n in nodes if n.op == "placeholder"]
    for node, wanted in zip(
        placeholders, input_names + [n.name for n in placeholders][len(input_names) :], strict=True
    ):
        names[node.name] = fxutil.unique_name(wanted, taken, "x_")
    for node in nodes:
        if node.op == "get_attr":
            names[node.name] = fxutil.unique_name(node.name, taken, "x_")
        elif node.op == "call_method" and node.target == "size" and node.args[0].op == "placeholder":
            # An input's size used by later code: `batch = image.size(0)`, `tokens_dim1 = tokens.size(1)`.
            axis = node.args[1] if len(node.args) > 1 else None
            hint = "batch" if axis == 0 else f"{names[node.args[0].name]}_dim{axis}"
            names[node.name] = fxutil.unique_name(hint, taken, "x_")
    last_use = {source.name: i for i, node in enumerate(nodes) for source in node.all_input_nodes}
    pooled: list[str] = []  # every name made for computed values, in the order made
    free: set[str] = set()
    for i, node in enumerate(nodes):
        if node.op in ("placeholder", "get_attr", "output") or node.name in names:
            continue
        dying = [
            names[a.name] for a in node.all_input_nodes if last_use[a.name] == i and names[a.name] in pooled
        ]
        free.update(dying)
        first = next(iter(node.all_input_nodes), None)
        if first is not None and names.get(first.name) in dying:
            name = names[first.name]
        elif free:
            name = min(free, key=pooled.index)
        else:
            name = fxutil.unique_name("x", taken, "x_")
            pooled.append(name)
        free.discard(name)
        names[node.name] = name
        if node.name not in last_use:  # never read: its name is free again at once
            free.add(name)
    return names


def _statement(node: fx.Node, names: dict[str, str]) -> str:
    def arg(a: Any) -> str:
        return _format(a, names)

    target = names.get(node.name)
    if node.op == "output":
        return f"return {arg(node.args[0])}"
    if node.op == "get_attr":
        return f"{target} = self.{node.target}"
    args = [arg(a) for a in node.args] + [f"{k}={arg(v)}" for k, v in node.kwargs.items()]
    if node.op == "call_module":
        return f"{target} = self.{node.target}({', '.join(args)})"
    if node.op == "call_method":
        return f"{target} = {args[0]}.{node.target}({', '.join(args[1:])})"
    fn = node.target
    if fn in _OPERATORS and len(node.args) == 2 and not node.kwargs:
        return f"{target} = {args[0]} {_OPERATORS[fn]} {args[1]}"
    if fn is operator.getitem:
        index = node.args[1]
        if isinstance(index, (list, tuple)):  # x[a:b, c] rather than x[(a:b, c)]
            return f"{target} = {args[0]}[{', '.join(_format(i, names) for i in index)}]"
        return f"{target} = {args[0]}[{args[1]}]"
    if fn is getattr and len(node.args) == 2 and isinstance(node.args[1], str):
        return f"{target} = {args[0]}.{node.args[1]}"
    if fn is operator.neg:
        return f"{target} = -{args[0]}"
    return f"{target} = {_function_name(fn)}({', '.join(args)})"


_NAMESPACES = {"fft": torch.fft, "linalg": torch.linalg, "special": torch.special}


def _function_name(fn) -> str:
    name = getattr(fn, "__name__", None)
    if name and getattr(F, name, None) is fn:
        return f"F.{name}"
    if name and getattr(torch, name, None) is fn:
        return f"torch.{name}"
    # torch.fft.fft is torch._C._fft.fft_fft: the namespace's prefix is not in its public name
    for prefix, namespace in _NAMESPACES.items():
        public = name[len(prefix) + 1 :] if name and name.startswith(prefix + "_") else name
        if public and getattr(namespace, public, None) is fn:
            return f"torch.{prefix}.{public}"
    if name and getattr(math, name, None) is fn:
        raise _Unwritable(f"math.{name} in the graph")
    raise _Unwritable(
        f"{getattr(fn, '__qualname__', fn)!s} from {getattr(fn, '__module__', '?')} has no torch or torch.nn.functional name"
    )


def _format(a: Any, names: dict[str, str]) -> str:
    if isinstance(a, fx.Node):
        return names[a.name]
    if isinstance(a, torch.Size):
        return repr(tuple(a))
    if isinstance(a, tuple):
        inner = ", ".join(_format(x, names) for x in a)
        return f"({inner},)" if len(a) == 1 else f"({inner})"
    if isinstance(a, list):
        return "[" + ", ".join(_format(x, names) for x in a) + "]"
    if isinstance(a, slice):
        # ONNX writes "to the end" as INT64_MAX and a unit step explicitly; Python leaves both out.
        stop = None if isinstance(a.stop, int) and a.stop >= 2**31 - 1 else a.stop
        step = None if a.step == 1 else a.step
        parts = [_format(x, names) if x is not None else "" for x in (a.start, stop, step)]
        return ":".join(parts[:2]) + (f":{parts[2]}" if parts[2] else "")
    if isinstance(a, torch.dtype):
        return str(a)
    if isinstance(a, torch.device):
        return f'torch.device("{a}")'
    if isinstance(a, (bool, int, str)) or a is None:
        return repr(a)
    if isinstance(a, float):
        return repr(a) if math.isfinite(a) else f'float("{a}")'
    if isinstance(a, torch.memory_format):
        return str(a)
    raise _Unwritable(f"cannot write the argument {a!r} ({type(a).__name__}) as code")
