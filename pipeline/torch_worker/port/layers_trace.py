"""Where a port parts ways with TF: each paired layer's input and output, torch against Keras, on the
first input batch (torch worker).

Inputs are compared as they are: a Keras layer's input against its torch module's input, so code
between modules (activations, pooling, flatten, indexing) is judged by the next module's input. A
Keras layer's output includes its activation (Conv2D(activation="relu")); torch's module output gets
that activation applied before the comparison, or is skipped for an activation this file does not
know. The first input or output out of tolerance names the place to look.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.compare import compare_arrays
from pipeline.config import ResolvedTolerance
from pipeline.torch_worker.port.rules import channels_first_order

_ACTIVATIONS = {
    None: lambda x: x,
    "linear": lambda x: x,
    "relu": lambda x: np.maximum(x, 0),
    "relu6": lambda x: np.clip(x, 0, 6),
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "tanh": np.tanh,
    "silu": lambda x: x / (1 + np.exp(-x)),
    "swish": lambda x: x / (1 + np.exp(-x)),
    "softmax": lambda x: _softmax_last(x),  # Dense only: a conv's channels are axis 1 in torch
}


def _softmax_last(x: np.ndarray) -> np.ndarray:
    shifted = np.exp(x - x.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def capture(module, names: list[str], tensors: list) -> dict[str, tuple[Any, Any]]:
    """The first call's (input, output) of each named submodule, as torch objects."""
    import torch

    modules = dict(module.named_modules())
    seen: dict[str, tuple[Any, Any]] = {}
    handles = []
    for name in names:

        def hook(mod, args, output, name=name):
            seen.setdefault(name, (args[0] if args else None, output))

        handles.append(modules[name].register_forward_hook(hook))
    try:
        with torch.no_grad():
            module(*tensors)
    finally:
        for handle in handles:
            handle.remove()
    return seen


def compare_layers(pairs, tf_values, captured, modules, tolerance: ResolvedTolerance, channels_first: bool):
    """One row per paired Keras layer: its input and output compared; and the first divergence."""
    rows, first = [], None
    for slots, site in pairs:
        slot = slots[0]
        name = slot.layer["name"]
        if len(slots) > 1 or slot.part or f"{name}:out" not in tf_values or site.name not in captured:
            continue
        torch_in, torch_out = captured[site.name]
        module = modules[site.name]
        row = {"tf_layer": name, "torch_module": site.name}
        reference_in = tf_values[f"{name}:in"]
        order = channels_first_order(slot.layer.get("flatten_from")) if channels_first else None
        if order is not None:
            reference_in = reference_in[..., order]
        # torch's convs and norms are channels-first whatever the port's input layout.
        moves = slot.kind in ("conv", "conv_transpose", "batchnorm")
        row["input"] = _judge(reference_in, _rnn_input(torch_in, module), tolerance, moves)
        row["output"] = _judge_output(slot, tf_values[f"{name}:out"], torch_out, module, tolerance, moves)
        rows.append(row)
        if first is None:
            first = _divergence(row, rows)
    return rows, first


def _divergence(row: dict[str, Any], rows: list[dict[str, Any]]) -> str | None:
    where = f"`{row['torch_module']}` (Keras `{row['tf_layer']}`)"
    if row["input"].get("passed") is False:
        before = [r for r in rows[:-1] if r["output"].get("passed")]
        after = f"after `{before[-1]['torch_module']}`, " if before else ""
        return (
            f"the input of {where} differs from Keras's (max |diff| {row['input']['max_abs_diff']:.3g}): "
            f"look at the code {after}before `{row['torch_module']}` (activations, pooling, flatten order, "
            f"indexing)"
        )
    if row["output"].get("passed") is False:
        return (
            f"{where} gets the same input as Keras but gives a different output (max |diff| "
            f"{row['output']['max_abs_diff']:.3g}): its settings differ (padding, stride, eps, activation)"
        )
    return None


def _judge(reference: np.ndarray, candidate, tolerance, channels_first: bool) -> dict[str, Any]:
    """`channels_first`: the torch value is (N, C, ...) where Keras's is (N, ..., C)."""
    array = _numpy(candidate)
    if array is None:
        return {"skipped": "not a tensor"}
    aligned = _align(reference, array, channels_first)
    if aligned is None:
        # Not a divergence by itself: a port may pad before a conv where Keras pads inside it.
        return {"skipped": f"shape {list(array.shape)} vs Keras {list(reference.shape)}"}
    if aligned.dtype != reference.dtype:  # token ids: int32 in TF, int64 in torch
        reference, aligned = reference.astype(np.float64), aligned.astype(np.float64)
    result = compare_arrays(reference, aligned, tolerance)
    return {"passed": bool(result["passed"]), "max_abs_diff": float(result["max_abs_diff"])}


def _judge_output(slot, reference, torch_out, module, tolerance, channels_first):
    activation = slot.config.get("activation")
    known = activation in _ACTIVATIONS and not (activation == "softmax" and slot.kind != "linear")
    if slot.kind in ("linear", "conv", "conv_transpose") and not known:
        return {"skipped": f"Keras applies activation {activation!r} inside the layer"}
    value = _rnn_output(torch_out, module, reference.ndim)
    array = _numpy(value)
    if array is None:
        return {"skipped": "not a tensor"}
    if slot.kind in ("linear", "conv", "conv_transpose"):
        array = _ACTIVATIONS[activation](array)
    return _judge(reference, array, tolerance, channels_first)


def _rnn_input(value, module):
    if getattr(module, "batch_first", True) or not hasattr(module, "num_layers"):
        return value
    return value.transpose(0, 1) if hasattr(value, "transpose") else value


def _rnn_output(value, module, reference_ndim: int):
    """nn.LSTM/GRU/RNN return (output, state); Keras gives the sequence or the last state."""
    if isinstance(value, tuple) and hasattr(module, "num_layers"):
        output, state = value
        if reference_ndim == 3:
            return output if module.batch_first else output.transpose(0, 1)
        hidden = state[0] if isinstance(state, tuple) else state  # LSTM: (h, c)
        if module.bidirectional:
            return np.concatenate([hidden[-2].numpy(), hidden[-1].numpy()], axis=-1)
        return hidden[-1]
    if isinstance(value, tuple):  # nn.MultiheadAttention: (output, weights)
        return value[0]
    return value


def _numpy(value) -> np.ndarray | None:
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "detach"):
        return value.detach().numpy()
    return None


def _align(reference: np.ndarray, array: np.ndarray, channels_first: bool) -> np.ndarray | None:
    if channels_first and array.ndim >= 3:
        array = np.moveaxis(array, 1, -1)  # torch's (N, C, ...) against Keras's (N, ..., C)
    return array if array.shape == reference.shape else None
