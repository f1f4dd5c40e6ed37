"""Native layers from the graph's arithmetic, named after the Keras variables they hold.

- MatMul (+ Add) with constant operands -> nn.Linear.
- Mul + Add by per-channel constants after a 4-D value -> nn.BatchNorm2d, when a Keras BatchNormalization
  layer explains the constants (scale = gamma / sqrt(var + eps), shift = beta - mean * scale): its
  statistics become buffers and gamma/beta parameters, as in Keras.
- A Conv2d whose weights are a Keras kernel times a BatchNorm scale (grappler folded the BN in) ->
  Conv2d with the kernel, followed by that BatchNorm2d.
- Conv2d and LSTM weights equal to a Keras kernel are tagged with the variable they came from.

The TF variables are found by value (the frozen graph lost their names). Every match is checked
numerically, and the driver re-verifies the model after the pass.
"""

from __future__ import annotations

import operator

import numpy as np
import torch
from torch import fx, nn

from pipeline.torch_worker.native import fxutil
from pipeline.torch_worker.native.context import PassContext, TFVariable

SOURCE = "tf2torch_source"  # module.__dict__ key: {param name: (TF variable path, transform)}
LAYER = "tf2torch_layer"  # module.__dict__ key: the Keras layer the module came from

_ADD = (torch.add, operator.add)
_MUL = (torch.mul, operator.mul)
_CONV = ("permute(3, 2, 0, 1)", lambda k: k.transpose(3, 2, 0, 1))
_DEPTHWISE = (
    "reshape(kh, kw, 1, in * multiplier).permute(3, 2, 0, 1)",
    lambda k: k.reshape(k.shape[0], k.shape[1], 1, -1).transpose(3, 2, 0, 1),
)
# The Keras kernels a Conv2d can hold: (layer class, variable) -> (transform, function, whether the
# layer's bias belongs to this conv). A SeparableConv2D is two convs: depthwise, then a pointwise 1x1
# conv that carries the bias (and a BatchNorm folded after it).
_CONV_KERNELS = {
    ("Conv2D", "kernel"): (*_CONV, True),
    ("DepthwiseConv2D", "kernel"): (*_DEPTHWISE, True),
    ("SeparableConv2D", "depthwise_kernel"): (*_DEPTHWISE, False),
    ("SeparableConv2D", "pointwise_kernel"): (*_CONV, True),
}
_BATCHNORM = ("BatchNormalization",)


def tag(module: nn.Module, layer: str | None, sources: dict[str, tuple[str, str]]) -> None:
    if layer:
        module.__dict__[LAYER] = layer
    module.__dict__.setdefault(SOURCE, {}).update(sources)


def linear(gm: fx.GraphModule, ctx: PassContext) -> list[str]:
    dense = ctx.layer_variables(("Dense", "EinsumDense"))
    done = 0
    for node in list(gm.graph.nodes):
        if not (node.op == "call_function" and node.target is torch.matmul and len(node.args) == 2):
            continue
        weight = fxutil.constant(gm, node.args[1])
        if weight is None or weight.dim() != 2 or not weight.is_floating_point():
            continue
        add = _only_user(node)
        bias = None
        if add is not None and add.op == "call_function" and add.target in _ADD:
            other = add.args[1] if add.args[0] is node else add.args[0]
            candidate = fxutil.constant(gm, other)
            if candidate is not None and tuple(candidate.shape) == (weight.shape[1],):
                bias = candidate
        last = add if bias is not None else node
        layer, sources = _find_dense(dense, weight, bias)
        module = nn.Linear(weight.shape[0], weight.shape[1], bias=bias is not None)
        with torch.no_grad():
            module.weight.copy_(weight.T)
            if bias is not None:
                module.bias.copy_(bias)
        tag(module, layer, sources)
        name = fxutil.fresh_name(gm, layer or "linear")
        gm.add_submodule(name, module)
        with gm.graph.inserting_before(last):
            call = gm.graph.call_module(name, (node.args[0],))
        last.replace_all_uses_with(call)
        done += 1
    fxutil.tidy(gm)
    ctx.count("linear", done)
    return []


def _find_dense(dense, weight: torch.Tensor, bias: torch.Tensor | None):
    w = weight.detach().numpy()
    for layer, variables in dense.items():
        kernel = variables.get("kernel")
        if kernel is None or kernel.value.shape != w.shape or not np.array_equal(kernel.value, w):
            continue
        sources = {"weight": (kernel.path, "transpose")}
        if bias is not None and "bias" in variables:
            sources["bias"] = (variables["bias"].path, "none")
        return layer, sources
    return None, {}


def batchnorm(gm: fx.GraphModule, ctx: PassContext) -> list[str]:
    layers = ctx.layer_variables(_BATCHNORM)
    if not layers:
        return []
    a = dict(ctx.values(gm)[0])  # a BatchNorm's module gets its output's value: the next one reads it
    used: set[str] = set()
    notes, done = [], 0
    for node in list(gm.graph.nodes):
        if not (node.op == "call_function" and node.target in _MUL and len(node.args) == 2):
            continue
        data, scale = _data_and_constant(gm, node)
        value = a.get(data.name) if data is not None else None
        # NCHW images (4-D) or features (2-D, after a Dense layer).
        if scale is None or not isinstance(value, torch.Tensor) or value.dim() not in (2, 4):
            continue
        channels = value.shape[1]
        add = _only_user(node)
        if add is not None and add.op == "call_function" and add.target in _ADD:
            _, shift = _data_and_constant(gm, add)
        else:
            # A zero shift (beta 0, moving mean 0: a fresh BatchNormalization) was optimised away.
            add, shift = node, torch.zeros(channels)
        if shift is None or scale.numel() != channels or shift.numel() != channels:
            continue
        found = _find_batchnorm(layers, scale.flatten().numpy(), shift.flatten().numpy(), used)
        if found is None:
            if add is not node:
                notes.append(f"{node.name}: per-channel Mul/Add that no Keras BatchNormalization explains")
            continue
        used.add(found)
        module = _batchnorm_module(found, layers[found], value.dim())
        name = fxutil.fresh_name(gm, found)
        gm.add_submodule(name, module)
        with gm.graph.inserting_before(add):
            call = gm.graph.call_module(name, (data,))
        add.replace_all_uses_with(call)
        a[call.name] = a.get(add.name)
        done += 1
    fxutil.tidy(gm)
    ctx.count("batchnorm", done)
    return notes


def conv_weights(gm: fx.GraphModule, ctx: PassContext) -> list[str]:
    """Tags each Conv2d with its Keras kernel; unfolds a BatchNorm grappler folded into it."""
    convs = {c: ctx.layer_variables(c) for c in {cls for cls, _ in _CONV_KERNELS}}
    bns = ctx.layer_variables(_BATCHNORM)
    if not any(convs.values()):
        return []
    used: set = set()  # (layer, kernel variable) of the convs, layer names of the BatchNorms
    notes, tagged, unfolded = [], 0, 0
    for node in list(gm.graph.nodes):
        if node.op != "call_module":
            continue
        conv = fxutil.module_of(gm, node)
        if type(conv) is not nn.Conv2d:
            continue
        w = conv.weight.detach().numpy()
        match = _find_conv(convs, w, used)
        if match is None:
            notes.append(f"{node.name}: no Keras kernel matches this Conv2d's weight")
            continue
        (cls, name), layer, kernel, scale = match
        used.add((layer, name))
        transform, _, owns_bias = _CONV_KERNELS[cls, name]
        variables = {k: v for k, v in convs[cls][layer].items() if owns_bias or k != "bias"}
        sources = {"weight": (variables[name].path, transform)}
        if scale is None:
            if conv.bias is not None and "bias" in variables:
                sources["bias"] = (variables["bias"].path, "none")
            tag(conv, layer, sources)
            tagged += 1
            continue
        bias = variables["bias"].value if "bias" in variables else None
        bn_layer = _find_folded_batchnorm(bns, scale, conv, bias, used)
        if bn_layer is None:
            notes.append(f"{node.name}: weight is a Keras kernel times a scale no BatchNorm explains")
            continue
        used.add(bn_layer)
        replacement = nn.Conv2d(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            conv.padding,
            conv.dilation,
            conv.groups,
            bias=bias is not None,
        )
        with torch.no_grad():
            replacement.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel)))
            if bias is not None:
                replacement.bias.copy_(torch.from_numpy(bias))
                sources["bias"] = (variables["bias"].path, "none")
        tag(replacement, layer, sources)
        setattr(gm, node.target, replacement)
        bn_name = fxutil.fresh_name(gm, bn_layer)
        gm.add_submodule(bn_name, _batchnorm_module(bn_layer, bns[bn_layer]))
        with gm.graph.inserting_after(node):
            bn_call = gm.graph.call_module(bn_name, (node,))
        node.replace_all_uses_with(bn_call, delete_user_cb=lambda user, keep=bn_call: user is not keep)
        unfolded += 1
    fxutil.tidy(gm)
    ctx.count("conv_weights", tagged)
    ctx.count("unfold_batchnorm", unfolded)
    return notes


# Optional parameters that the graph optimisers drop when Keras's initial value makes them a no-op
# (a zero bias or beta): torch parameter -> the Keras variable names it holds.
_DROPPABLE = {"bias": ("bias", "beta")}


def dropped_parameters(gm: fx.GraphModule, ctx: PassContext) -> list[str]:
    """Gives back every module tagged with a Keras layer the trainable parameters that layer has and
    the graph lost because they were zero (an all-zero bias is Keras's initial one): the outputs do
    not change, and model.py can learn them as Keras does. Any module kind: Linear, ConvNd,
    ConvTransposeNd, LayerNorm."""
    by_layer: dict[str, dict[str, TFVariable]] = {}
    for variable in ctx.tf_variables or []:
        by_layer.setdefault(variable.layer, {})[variable.name] = variable
    # A layer computed by several modules (a SeparableConv2D: depthwise, then pointwise) adds its
    # bias in the last of them, where its output is.
    last: dict[str, nn.Module] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            module = fxutil.module_of(gm, node)
            if module.__dict__.get(LAYER):
                last[module.__dict__[LAYER]] = module
    done = 0
    for module in gm.modules():
        layer = module.__dict__.get(LAYER)
        variables = by_layer.get(layer)
        if not variables or last.get(layer, module) is not module:
            continue
        sources = module.__dict__.setdefault(SOURCE, {})
        mapped = {path for path, _ in sources.values()}
        for param_name, keras_names in _DROPPABLE.items():
            if param_name not in module._parameters or module._parameters[param_name] is not None:
                continue
            variable = next((variables[k] for k in keras_names if k in variables), None)
            if variable is None or variable.path in mapped or not variable.trainable or variable.value.any():
                continue
            if variable.value.size != _output_width(module):
                continue
            module.register_parameter(param_name, nn.Parameter(torch.zeros(variable.value.size)))
            sources[param_name] = (variable.path, "none")
            done += 1
    ctx.count("dropped_parameters", done)
    return []


def _output_width(module: nn.Module) -> int | None:
    if isinstance(module, nn.LayerNorm):
        return int(np.prod(module.normalized_shape))
    return getattr(module, "out_channels", None) or getattr(module, "out_features", None)


def lstm_weights(gm: fx.GraphModule, ctx: PassContext) -> list[str]:
    """Tags nn.LSTM with the Keras LSTM's variables. Keras has one bias where torch has two: torch's
    hidden-hidden bias is zero after the import and is frozen, so training moves what TF's would."""
    layers = ctx.layer_variables("LSTM")
    done = 0
    for node in gm.graph.nodes:
        if node.op != "call_module":
            continue
        lstm = fxutil.module_of(gm, node)
        if type(lstm) is not nn.LSTM or lstm.bidirectional or lstm.num_layers != 1:
            continue
        for layer, variables in layers.items():
            kernel = variables.get("kernel")
            if kernel is None or not _close(kernel.value.T, lstm.weight_ih_l0.detach().numpy()):
                continue
            sources = {
                "weight_ih_l0": (kernel.path, "transpose (gates i, f, c, o as torch's i, f, g, o)"),
                "weight_hh_l0": (variables["recurrent_kernel"].path, "transpose"),
            }
            if "bias" in variables and not lstm.bias_hh_l0.detach().any():
                sources["bias_ih_l0"] = (variables["bias"].path, "none")
                lstm.bias_hh_l0.requires_grad_(False)
            tag(lstm, layer, sources)
            done += 1
            break
    ctx.count("lstm_weights", done)
    return []


def _find_conv(convs, w: np.ndarray, used: set[tuple[str, str]]):
    """((class, variable), layer, kernel in torch's layout, per-channel scale or None) of the Keras
    kernel this weight is, or is times a folded BatchNorm's scale."""
    for (cls, name), (_, transform, _) in _CONV_KERNELS.items():
        for layer, variables in convs[cls].items():
            if (layer, name) in used or name not in variables:
                continue
            kernel = transform(variables[name].value)
            if kernel.shape != w.shape:
                continue
            if _close(kernel, w):
                return (cls, name), layer, kernel, None
            flat_k, flat_w = kernel.reshape(len(kernel), -1), w.reshape(len(w), -1)
            denominator = (flat_k * flat_k).sum(axis=1)
            if not denominator.all():
                continue
            scale = (flat_k * flat_w).sum(axis=1) / denominator
            if _close(kernel * scale[:, None, None, None], w):
                return (cls, name), layer, kernel, scale
    return None


def _find_folded_batchnorm(bns, scale: np.ndarray, conv: nn.Conv2d, bias, used: set[str]):
    folded_bias = conv.bias.detach().numpy() if conv.bias is not None else np.zeros_like(scale)
    for layer, variables in bns.items():
        if layer in used:
            continue
        own_scale, shift = _batchnorm_affine(variables)
        if own_scale is None or own_scale.shape != scale.shape or not _close(own_scale, scale):
            continue
        expected = shift + (bias * own_scale if bias is not None else 0)
        if _close(expected, folded_bias):
            return layer
    return None


def _find_batchnorm(layers, scale: np.ndarray, shift: np.ndarray, used: set[str]) -> str | None:
    for layer, variables in layers.items():
        if layer in used:
            continue
        own_scale, own_shift = _batchnorm_affine(variables)
        if own_scale is None or own_scale.shape != scale.shape:
            continue
        if _close(own_scale, scale) and _close(own_shift, shift):
            return layer
    return None


def _batchnorm_affine(variables: dict[str, TFVariable]):
    """(scale, shift) of a Keras BatchNormalization in inference; None without moving statistics.
    A layer built with scale=False (InceptionV3, NASNet) has no gamma: 1; center=False no beta: 0."""
    if not {"moving_mean", "moving_variance"} <= set(variables):
        return None, None
    gamma, beta = _gamma_beta(variables)
    eps = float(_bn_config(variables).get("epsilon", 1e-3))
    scale = gamma / np.sqrt(variables["moving_variance"].value + eps)
    return scale, beta - variables["moving_mean"].value * scale


def _gamma_beta(variables: dict[str, TFVariable]) -> tuple[np.ndarray, np.ndarray]:
    mean = variables["moving_mean"].value
    gamma = variables["gamma"].value if "gamma" in variables else np.ones_like(mean)
    beta = variables["beta"].value if "beta" in variables else np.zeros_like(mean)
    return gamma, beta


def _bn_config(variables: dict[str, TFVariable]) -> dict:
    return variables["moving_mean"].config


def _batchnorm_module(layer: str, variables: dict[str, TFVariable], rank: int = 4) -> nn.Module:
    config = _bn_config(variables)
    channels = variables["moving_mean"].value.shape[0]
    # Keras' momentum weighs the old statistics, torch's the new batch: 0.99 in Keras is 0.01 in torch.
    momentum = round(1.0 - float(config.get("momentum", 0.99)), 6)
    kind = nn.BatchNorm2d if rank == 4 else nn.BatchNorm1d
    module = kind(channels, eps=float(config.get("epsilon", 1e-3)), momentum=momentum)
    gamma, beta = _gamma_beta(variables)
    values = {"weight": gamma, "bias": beta}
    with torch.no_grad():
        for torch_name, keras_name in _BATCHNORM_NAMES.items():
            value = variables[keras_name].value if keras_name in variables else values[torch_name]
            getattr(module, torch_name).copy_(torch.from_numpy(np.asarray(value)))
    # What the Keras layer lacks (scale=False: no gamma) stays at 1 or 0 and is frozen, as in Keras.
    for torch_name, keras_name in _BATCHNORM_NAMES.items():
        if keras_name not in variables:
            getattr(module, torch_name).requires_grad_(False)
    tag(
        module,
        layer,
        {t: (variables[k].path, "none") for t, k in _BATCHNORM_NAMES.items() if k in variables},
    )
    return module


_BATCHNORM_NAMES = {
    "weight": "gamma",
    "bias": "beta",
    "running_mean": "moving_mean",
    "running_var": "moving_variance",
}


def _data_and_constant(gm: fx.GraphModule, node: fx.Node):
    first, second = node.args
    if fxutil.constant(gm, second) is not None and isinstance(first, fx.Node):
        return first, fxutil.constant(gm, second)
    if fxutil.constant(gm, first) is not None and isinstance(second, fx.Node):
        return second, fxutil.constant(gm, first)
    return None, None


def _only_user(node: fx.Node) -> fx.Node | None:
    return next(iter(node.users)) if len(node.users) == 1 else None


def _close(x: np.ndarray, y: np.ndarray) -> bool:
    # float32 rounding of a product and a division: a few ulps, far below any real mismatch.
    return x.shape == y.shape and np.allclose(x, y, rtol=1e-5, atol=1e-7 * (np.abs(y).max() + 1e-30))
