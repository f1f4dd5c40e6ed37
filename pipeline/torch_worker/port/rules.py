"""How each Keras layer's variables become a torch module's parameters (torch worker, numpy + torch).

A Keras layer gives one or two *slots* (SeparableConv2D gives a depthwise and a pointwise conv); each
slot has a *kind* that names the torch modules that can take it. `transfer` returns the assignments
(torch parameter <- TF variables, with the transform applied and described) or raises Mismatch with the
expected and found shapes. The conventions:

- Dense (in, out) -> Linear.weight (out, in); after a Flatten of an H x W x C map, a channels-first
  port flattens C x H x W, so the kernel's rows are reordered HWC -> CHW.
- Conv kernels (k..., in/groups, out) -> (out, in/groups, k...); depthwise (k..., in, mult) ->
  (in*mult, 1, k...); transposed convs (k..., out, in) -> (in, out, k...).
- LSTM gates i, f, c, o are torch's i, f, g, o; GRU's z, r, h are torch's r, z, n (reordered). Keras
  has one bias (GRU reset_after: an input and a recurrent one): torch's bias_hh is zero.
- MultiHeadAttention's per-head (dim, heads, key_dim) kernels -> nn.MultiheadAttention's in_proj.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Keras layer class -> the kind of torch module that takes its weights.
TF_KINDS = {
    **dict.fromkeys(("Dense",), "linear"),
    **dict.fromkeys(
        (
            "Conv1D",
            "Conv2D",
            "Conv3D",
            "DepthwiseConv1D",
            "DepthwiseConv2D",
            "SeparableConv1D",
            "SeparableConv2D",
        ),
        "conv",
    ),
    **dict.fromkeys(("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose"), "conv_transpose"),
    "BatchNormalization": "batchnorm",
    "LayerNormalization": "layernorm",
    "Embedding": "embedding",
    **dict.fromkeys(("LSTM", "GRU", "SimpleRNN", "Bidirectional"), "rnn"),
    "MultiHeadAttention": "attention",
}
KIND_NAMES = {
    "linear": "nn.Linear",
    "conv": "nn.Conv1d/2d/3d",
    "conv_transpose": "nn.ConvTranspose1d/2d/3d",
    "batchnorm": "nn.BatchNorm1d/2d/3d",
    "layernorm": "nn.LayerNorm",
    "embedding": "nn.Embedding",
    "rnn": "nn.LSTM/GRU/RNN",
    "attention": "nn.MultiheadAttention",
}
# What torch computes for each Keras RNN class (torch class, its gate activations).
RNN_TORCH = {"LSTM": "LSTM", "GRU": "GRU", "SimpleRNN": "RNN"}


def torch_kind(module) -> str | None:
    import torch.nn as nn

    kinds = (
        (nn.Linear, "linear"),
        (nn.modules.conv._ConvNd, "conv"),
        (nn.modules.batchnorm._NormBase, "batchnorm"),
        (nn.LayerNorm, "layernorm"),
        (nn.Embedding, "embedding"),
        (nn.RNNBase, "rnn"),
        (nn.MultiheadAttention, "attention"),
    )
    for cls, kind in kinds:
        if isinstance(module, cls):
            if kind == "conv" and isinstance(module, nn.modules.conv._ConvTransposeNd):
                return "conv_transpose"
            return kind
    return None


@dataclass
class Slot:
    """One Keras layer's share of weights for one torch module."""

    layer: dict[str, Any]  # an entry of tf_layers.json
    kind: str | None
    part: str | None = None  # SeparableConv: "depthwise" | "pointwise"

    @property
    def label(self) -> str:
        return self.layer["name"] + (f" ({self.part})" if self.part else "")

    @property
    def cls(self) -> str:
        return self.layer["class"]

    @property
    def config(self) -> dict[str, Any]:
        return self.layer.get("config", {})

    def shapes(self) -> str:
        return ", ".join(f"{_role(self.layer, w)} {tuple(w['shape'])}" for w in self.weights())

    def weights(self) -> list[dict[str, Any]]:
        weights = self.layer["weights"]
        if self.part == "depthwise":
            return [w for w in weights if _role(self.layer, w) == "depthwise_kernel"]
        if self.part == "pointwise":
            return [w for w in weights if _role(self.layer, w) != "depthwise_kernel"]
        return weights


def slots_of(layer: dict[str, Any]) -> list[Slot]:
    kind = TF_KINDS.get(layer["class"])
    if layer["class"].startswith("SeparableConv"):
        return [Slot(layer, kind, "depthwise"), Slot(layer, kind, "pointwise")]
    return [Slot(layer, kind)]


@dataclass
class Assignment:
    param: str  # the torch parameter or buffer, relative to the module
    value: np.ndarray
    sources: list[str]  # TF variable paths
    transform: str


@dataclass
class Transfer:
    assignments: list[Assignment] = field(default_factory=list)


class Mismatch(Exception):
    """The slot's weights do not fit the module: `message` says which shapes differ."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class Weights:
    """A slot's variables by role (path inside the layer, e.g. 'kernel', 'forward_lstm/lstm_cell/bias')."""

    def __init__(self, slots: list[Slot], arrays):
        self.items: list[tuple[str, str, np.ndarray]] = []  # (role, path, value)
        for slot in slots:
            for w in slot.weights():
                self.items.append((_role(slot.layer, w), w["path"], np.asarray(arrays[w["key"]])))

    def get(self, *suffix: str, within: str = "") -> tuple[np.ndarray, str] | None:
        """The variable whose role ends with `suffix` (and contains `within`), or None."""
        want = "/".join(suffix)
        for role, path, value in self.items:
            if (role == want or role.endswith("/" + want)) and within in role:
                return value, path
        return None


def _role(layer: dict[str, Any], weight: dict[str, Any]) -> str:
    # Paths may carry the model's name first ('cnn/conv2d/kernel'): the role follows the layer's name.
    # A reloaded Bidirectional's paths lack it ('forward_lstm/lstm_cell/kernel'): the whole path is the role.
    parts = weight["path"].split(":")[0].split("/")
    if layer["name"] in parts:
        return "/".join(parts[len(parts) - parts[::-1].index(layer["name"]) :])
    return "/".join(parts)


def transfer(slots: list[Slot], module, arrays, channels_first: bool) -> Transfer:
    """The assignments that put `slots`' weights (usually one slot; several for a multi-layer RNN)
    into `module`. Raises Mismatch."""
    kind = slots[0].kind
    result = Transfer()
    handler = {
        "linear": _linear,
        "conv": _conv,
        "conv_transpose": _conv_transpose,
        "batchnorm": _batchnorm,
        "layernorm": _layernorm,
        "embedding": _embedding,
        "rnn": _rnn,
        "attention": _attention,
    }[kind]
    handler(slots, arrays, module, result, channels_first)
    return result


def _put(result: Transfer, module, param: str, value: np.ndarray, sources: list[str], transform: str):
    target = _param(module, param)
    if target is None:
        raise Mismatch(f"{type(module).__name__} has no {param} for {', '.join(sources)}")
    if tuple(target.shape) != value.shape:
        raise Mismatch(
            f"{param} is {tuple(target.shape)} but {', '.join(sources)} gives {value.shape} ({transform})",
        )
    result.assignments.append(Assignment(param, value, sources, transform))


def _param(module, name: str):
    owner = module
    *parents, leaf = name.split(".")
    for part in parents:
        owner = getattr(owner, part)
    value = getattr(owner, leaf, None)
    return value if value is not None and hasattr(value, "shape") else None


def _bias(result: Transfer, module, weights: Weights, slot: Slot, param: str = "bias", transform="as is"):
    """Keras bias -> torch bias; a torch bias Keras lacks is zeroed (and noted)."""
    found = weights.get("bias")
    torch_bias = _param(module, param)
    if found is not None:
        if torch_bias is None:
            raise Mismatch(f"Keras `{slot.label}` has a bias {found[0].shape} but the torch module has none")
        _put(result, module, param, found[0], [found[1]], transform)
    elif torch_bias is not None:
        zeros = np.zeros(tuple(torch_bias.shape), dtype=np.float32)
        result.assignments.append(Assignment(param, zeros, [], "zero: Keras has no bias (use bias=False)"))


def _linear(slots, arrays, module, result, channels_first):
    weights = Weights(slots, arrays)
    slot = slots[0]
    kernel, path = weights.get("kernel")
    matrix = kernel.reshape(-1, kernel.shape[-1])
    transform = "transpose (in, out) -> (out, in)"
    rows = channels_first_order(slot.layer.get("flatten_from")) if channels_first else None
    if rows is not None:
        matrix = matrix[rows]
        spatial = len(slot.layer["flatten_from"]) - 2
        transform += ", rows reordered " + _dims_word(spatial) + " (a channels-first Flatten)"
    _put(result, module, "weight", np.ascontiguousarray(matrix.T), [path], transform)
    _bias(result, module, weights, slot)


def channels_first_order(flat: list | None) -> np.ndarray | None:
    """For a Flatten of an (N, H, W, C) map: the index that puts Keras's H x W x C features in a
    channels-first port's C x H x W order (None when the shape is unknown or not a feature map)."""
    if not flat or len(flat) < 3 or None in flat[1:]:
        return None
    spatial, channels = flat[1:-1], flat[-1]
    order = (len(spatial), *range(len(spatial)))  # (C, H, W) from (H, W, C)
    return np.arange(int(np.prod(flat[1:]))).reshape(*spatial, channels).transpose(order).reshape(-1)


def _dims_word(spatial: int) -> str:
    names = "DHW"[-spatial:] if spatial <= 3 else "spatial"
    return f"{names}C -> C{names}"


def _conv(slots, arrays, module, result, channels_first):
    weights = Weights(slots, arrays)
    slot = slots[0]
    depthwise = weights.get("depthwise_kernel")
    if depthwise is None and slot.cls.startswith("Depthwise"):
        depthwise = weights.get("kernel")  # Keras 3 names DepthwiseConv's kernel `kernel`
    if depthwise is not None:  # DepthwiseConv, or the depthwise half of a SeparableConv
        kernel, path = depthwise
        n = kernel.ndim - 2
        merged = kernel.reshape(
            *kernel.shape[:n], -1
        )  # (k..., in * mult): channel c, multiplier m -> c*mult+m
        value = np.ascontiguousarray(np.moveaxis(merged, -1, 0)[:, None])
        _put(result, module, "weight", value, [path], "depthwise (k..., in, mult) -> (in*mult, 1, k...)")
        if slot.part == "depthwise":
            if module.bias is not None:
                zeros = np.zeros(tuple(module.bias.shape), np.float32)
                result.assignments.append(
                    Assignment("bias", zeros, [], "zero: the depthwise half has no bias")
                )
            return
        _bias(result, module, weights, slot)
        return
    kernel, path = weights.get("pointwise_kernel") or weights.get("kernel")
    n = kernel.ndim - 2
    value = np.ascontiguousarray(kernel.transpose(n + 1, n, *range(n)))
    _put(result, module, "weight", value, [path], "(k..., in, out) -> (out, in, k...)")
    _bias(result, module, weights, slot)


def _conv_transpose(slots, arrays, module, result, channels_first):
    weights = Weights(slots, arrays)
    kernel, path = weights.get("kernel")
    n = kernel.ndim - 2
    value = np.ascontiguousarray(kernel.transpose(n + 1, n, *range(n)))
    _put(result, module, "weight", value, [path], "(k..., out, in) -> (in, out, k...)")
    _bias(result, module, weights, slots[0])


def _batchnorm(slots, arrays, module, result, channels_first):
    weights = Weights(slots, arrays)
    roles = (("gamma", "weight", 1.0), ("beta", "bias", 0.0), ("moving_mean", "running_mean", None))
    for role, param, absent in (*roles, ("moving_variance", "running_var", None)):
        found = weights.get(role)
        if found is not None:
            if _param(module, param) is None:
                raise Mismatch(
                    f"Keras `{slots[0].label}` has {role} {found[0].shape} but the torch module has no {param} "
                    f"({'affine=False' if role in ('gamma', 'beta') else 'track_running_stats=False'})"
                )
            _put(result, module, param, found[0], [found[1]], "as is")
        elif absent is not None and _param(module, param) is not None:
            filled = np.full(tuple(_param(module, param).shape), absent, np.float32)
            result.assignments.append(Assignment(param, filled, [], f"{absent:g}: Keras has no {role}"))


def _layernorm(slots, arrays, module, result, channels_first):
    weights = Weights(slots, arrays)
    for role, param, absent in (("gamma", "weight", 1.0), ("beta", "bias", 0.0)):
        found = weights.get(role)
        if found is not None:
            if _param(module, param) is None:
                raise Mismatch(f"Keras `{slots[0].label}` has {role} but the torch LayerNorm has no {param}")
            _put(
                result,
                module,
                param,
                found[0].reshape(tuple(_param(module, param).shape)),
                [found[1]],
                "as is",
            )
        elif _param(module, param) is not None:
            filled = np.full(tuple(_param(module, param).shape), absent, np.float32)
            result.assignments.append(Assignment(param, filled, [], f"{absent:g}: Keras has no {role}"))


def _embedding(slots, arrays, module, result, channels_first):
    weights = Weights(slots, arrays)
    table, path = weights.get("embeddings")
    _put(result, module, "weight", table, [path], "as is")


_GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


def _rnn(slots, arrays, module, result, channels_first):
    torch_class = type(module).__name__
    directions = 2 if module.bidirectional else 1
    if len(slots) != module.num_layers:
        raise Mismatch(
            f"{torch_class} has num_layers={module.num_layers} but {len(slots)} Keras layer(s) map to it"
        )
    for index, slot in enumerate(slots):
        wrapped = slot.config.get("layer_class") if slot.cls == "Bidirectional" else slot.cls
        if RNN_TORCH.get(wrapped) != torch_class:
            raise Mismatch(f"Keras `{slot.label}` is a {wrapped}, the torch module an nn.{torch_class}")
        if (slot.cls == "Bidirectional") != (directions == 2):
            raise Mismatch(
                f"Keras `{slot.label}` is {'' if slot.cls == 'Bidirectional' else 'not '}bidirectional, the "
                f"torch {torch_class} has bidirectional={directions == 2}"
            )
        sides = ("forward_", "backward_") if directions == 2 else ("",)
        one = Weights([slot], arrays)
        for side, suffix in zip(sides, ("", "_reverse"), strict=False):
            _rnn_direction(one, side, f"l{index}{suffix}", wrapped, module, result)


def _rnn_direction(weights: Weights, side: str, layer: str, cls: str, module, result: Transfer):
    kernel, k_path = weights.get("kernel", within=side)
    recurrent, r_path = weights.get("recurrent_kernel", within=side)
    gates = _GATES[RNN_TORCH[cls]]
    order = [1, 0, 2] if cls == "GRU" else list(range(gates))  # Keras z, r, h -> torch r, z, n
    note = "gates z,r,h -> r,z,n, " if cls == "GRU" else ""
    _put(result, module, f"weight_ih_{layer}", _gates(kernel, order).T.copy(), [k_path], note + "transpose")
    _put(
        result, module, f"weight_hh_{layer}", _gates(recurrent, order).T.copy(), [r_path], note + "transpose"
    )
    found = weights.get("bias", within=side)
    if found is None:
        if module.bias:
            raise Mismatch(f"Keras {cls} `{layer}` has no bias but the torch {cls} has bias=True")
        return
    if not module.bias:
        raise Mismatch(f"Keras {cls} has a bias {found[0].shape} but the torch module has bias=False")
    bias, b_path = found
    if bias.ndim == 2:  # GRU reset_after: the input bias and the recurrent bias
        _put(result, module, f"bias_ih_{layer}", _gates(bias[0], order), [b_path], note + "row 0 (input)")
        _put(result, module, f"bias_hh_{layer}", _gates(bias[1], order), [b_path], note + "row 1 (recurrent)")
        return
    _put(result, module, f"bias_ih_{layer}", _gates(bias, order), [b_path], note + "as is")
    hh = _param(module, f"bias_hh_{layer}")
    zeros = np.zeros(tuple(hh.shape), np.float32)
    result.assignments.append(Assignment(f"bias_hh_{layer}", zeros, [], "zero: Keras has one bias"))


def _gates(array: np.ndarray, order: list[int]) -> np.ndarray:
    chunks = np.split(array, len(order), axis=-1)
    return np.concatenate([chunks[i] for i in order], axis=-1)


def _attention(slots, arrays, module, result, channels_first):
    weights = Weights(slots, arrays)
    slot = slots[0]
    heads = slot.config.get("num_heads")
    if heads != module.num_heads:
        raise Mismatch(
            f"Keras `{slot.label}` has num_heads={heads}, the torch module num_heads={module.num_heads}"
        )
    projections = []
    for name in ("query", "key", "value"):
        kernel, path = weights.get("kernel", within=f"{name}/")
        bias = weights.get("bias", within=f"{name}/")
        projections.append((kernel.reshape(kernel.shape[0], -1).T, bias, path))
    transform = "(dim, heads, head_dim) -> (heads*head_dim, dim)"
    if module._qkv_same_embed_dim:
        stacked = np.concatenate([p[0] for p in projections])
        _put(
            result,
            module,
            "in_proj_weight",
            stacked,
            [p[2] for p in projections],
            "q,k,v stacked, " + transform,
        )
    else:
        for (matrix, _, path), name in zip(projections, ("q", "k", "v"), strict=True):
            _put(result, module, f"{name}_proj_weight", matrix, [path], transform)
    biases = [p[1] for p in projections]
    if module.in_proj_bias is not None:
        if any(b is None for b in biases):
            raise Mismatch(
                f"Keras `{slot.label}` has no projection biases but the torch module has in_proj_bias"
            )
        stacked = np.concatenate([b[0].reshape(-1) for b in biases])
        _put(result, module, "in_proj_bias", stacked, [b[1] for b in biases], "q,k,v stacked, flattened")
    kernel, path = weights.get("kernel", within="attention_output/")
    out = kernel.reshape(-1, kernel.shape[-1]).T
    _put(
        result,
        module,
        "out_proj.weight",
        np.ascontiguousarray(out),
        [path],
        "(heads, head_dim, dim) -> (dim, heads*head_dim)",
    )
    bias = weights.get("bias", within="attention_output/")
    if bias is not None:
        _put(result, module, "out_proj.bias", bias[0], [bias[1]], "as is")
