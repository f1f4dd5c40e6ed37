"""Every trainable parameter of model.py tied to the Keras variable it holds, whatever made the module.

The layer passes tag the modules they build (Linear, Conv2d, BatchNorm, GRU/LSTM) from the Keras layer
class they expect. Modules that onnx2torch made directly (a Conv for a Keras Conv1D or
Conv2DTranspose, a bidirectional LSTM), or whose variable sits in a custom layer or has another shape
(a MultiHeadAttention's 3-D EinsumDense kernels, an embedding table inside a custom layer), are found
here by value, under every layout weight_layout.py knows. Without a source a parameter is not
compared by the training check, and a trainable TF variable without a parameter fails it.

- A parameter whose values are all equal (a fresh zero bias) says nothing by value: it is matched
  only within the Keras layer the module's other parameters came from.
- A zero parameter that no variable explains beside parameters that one does (an LSTM's second bias,
  which Keras does not have) is a constant in TF: it is frozen, so torch does not train it either.
- Modules that hold the same variables (a Keras layer called twice, a weight used in two places of a
  loop body) become one module called twice, so their gradients add up as TF's do.
"""

from __future__ import annotations

import numpy as np
from torch import fx, nn

from pipeline.common import weight_layout
from pipeline.torch_worker.native import fxutil
from pipeline.torch_worker.native.context import PassContext, TFVariable
from pipeline.torch_worker.native.layers import LAYER, SOURCE

_DEPTHWISE = "reshape(kh, kw, 1, in * multiplier).permute(3, 2, 0, 1)"


def variables_by_value(gm: fx.GraphModule, ctx: PassContext) -> list[str]:
    variables = [
        v for v in ctx.tf_variables or [] if np.issubdtype(v.value.dtype, np.floating) and v.value.size > 1
    ]
    if not variables:
        return []
    used = {path for m in gm.modules() for path, _ in m.__dict__.get(SOURCE, {}).values()}
    tagged = frozen = 0
    for module in gm.modules():
        own = dict(module.named_parameters(recurse=False))
        if not own or isinstance(module, fx.GraphModule):
            continue
        sources = module.__dict__.setdefault(SOURCE, {})
        # Parameters with telling values first: they name the layer the constant ones belong to.
        for name, param in sorted(own.items(), key=lambda item: _is_constant(item[1].detach().numpy())):
            if name in sources:
                continue
            found = _find(variables, param.detach().numpy(), module.__dict__.get(LAYER), used)
            if found is None:
                continue
            variable, transform = found
            sources[name] = (variable.path, transform)
            used.add(variable.path)
            module.__dict__.setdefault(LAYER, variable.layer)
            tagged += 1
        if sources:
            for name, param in own.items():
                if name not in sources and param.requires_grad and not param.detach().any():
                    param.requires_grad_(False)
                    frozen += 1
    ctx.count("variables_by_value", tagged)
    ctx.count("frozen_zero_parameters", frozen)
    return []


def _find(variables: list[TFVariable], value: np.ndarray, layer: str | None, used: set[str]):
    constant = _is_constant(value)
    ranked = sorted(
        (v for v in variables if v.value.size == value.size and (not constant or v.layer == layer)),
        # the module's own layer first, then variables no parameter holds yet, then shared ones
        key=lambda v: (v.layer != layer, v.path in used),
    )
    for variable in ranked:
        if constant and variable.path in used:
            continue
        for transform in _transforms(variable.value, value):
            candidate = weight_layout.to_torch(transform, variable.value, value.shape)
            if candidate is not None and np.array_equal(candidate, value):
                return variable, transform
    return None


def _transforms(tf_value: np.ndarray, torch_value: np.ndarray) -> list[str]:
    found = ["none"]
    if tf_value.ndim == 2:
        found += ["transpose", "transpose (gates z, r, h as r, z, n)"]
        if tf_value.shape[0] == 2:
            found += ["row 0", "row 1", "row 0, gates reordered", "row 1, gates reordered"]
    if tf_value.ndim >= 3:
        found.append(weight_layout.conv_kernel_permutation(tf_value.ndim))
        if torch_value.ndim == 2:
            found.append("reshape(in, out).transpose")
    if tf_value.ndim == 4:
        found.append(_DEPTHWISE)
    return found


def _is_constant(value: np.ndarray) -> bool:
    return bool(value.size) and bool(np.all(value == value.flat[0]))


def shared_layers(gm: fx.GraphModule, ctx: PassContext) -> list[str]:
    """Modules that hold the same TF variables in the same layout: the first one, called each time."""
    first: dict[tuple, str] = {}
    done = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_module":
            continue
        module = fxutil.module_of(gm, node)
        sources = module.__dict__.get(SOURCE, {})
        own = dict(module.named_parameters(recurse=False))
        if not own or set(own) != set(sources):
            continue
        key = (type(module), tuple(sorted(sources.items())), repr(module))
        if key not in first:
            first[key] = node.target
            continue
        if not _same_values(gm.get_submodule(first[key]), module):
            continue
        node.target = first[key]
        done += 1
    if done:
        gm.delete_all_unused_submodules()
        gm.recompile()
    ctx.count("shared_layers", done)
    return []


def _same_values(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(sa[k].shape == sb[k].shape and sa[k].equal(sb[k]) for k in sa)
