"""The Keras model's layers and variables, written for the torch side (TF worker).

The frozen graph tf2onnx converts has lost the variables' names (Keras 3 exports them as `unknown`) and
which of them are trainable; BatchNorm is folded into Mul/Add or into the preceding Conv. The native
passes (pipeline/torch_worker/native/) find each TF variable in the ONNX graph by value, so they need the variables
themselves: `tf_weights.npz` holds the arrays, `tf_layers.json` the layers with their variables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pipeline import artifacts

# Layer config keys the torch side uses: the native passes (BatchNorm's epsilon and momentum, Dropout's
# rate, ...) and `verify`'s transfer and its checks of a hand-written port (padding, strides, gates).
_CONFIG_KEYS = (
    *("epsilon", "momentum", "rate", "axis", "use_bias", "center", "scale", "activation"),
    *("filters", "kernel_size", "strides", "padding", "dilation_rate", "groups", "depth_multiplier"),
    *("units", "recurrent_activation", "return_sequences", "go_backwards", "reset_after", "merge_mode"),
    *("num_heads", "key_dim", "value_dim", "input_dim", "output_dim", "data_format"),
)


def write(model, out: Path, sample: list | None = None) -> dict[str, Any]:
    layers, arrays = [], {}
    for layer in _leaf_layers(model):
        weights = []
        for variable in layer.weights:
            key = f"w{len(arrays)}"
            arrays[key] = np.asarray(variable.numpy())
            weights.append(
                {
                    "key": key,
                    "name": _short_name(variable, layer),
                    "path": getattr(variable, "path", None) or variable.name,
                    "shape": list(arrays[key].shape),
                    "trainable": bool(variable.trainable),
                }
            )
        if not weights:
            continue
        layers.append(
            {
                "name": layer.name,
                "class": type(layer).__name__,
                "config": _config(layer),
                "weights": weights,
                **_io_shapes(layer),
            }
        )
    artifacts.save_arrays(out / artifacts.TF_WEIGHTS, arrays)
    trainable = int(sum(np.prod(v.shape) for v in model.trainable_weights))
    non_trainable = int(sum(np.prod(v.shape) for v in model.non_trainable_weights))
    summary = {"layers": layers, "trainable_elements": trainable, "non_trainable_elements": non_trainable}
    if sample is not None:
        summary["dropouts"] = _dropouts(model, sample, out)
        summary["activity_outputs"] = _activity_outputs(model, sample, out)
    artifacts.save_json(out / artifacts.TF_LAYERS, summary)
    return {"trainable_elements": trainable, "non_trainable_elements": non_trainable}


def recorded_dropout_names(model, out: Path) -> dict[int, str]:
    """id(Dropout layer) -> the name tf_layers.json recorded for it: a zoo model built again after the
    export numbers its layers anew (`dropout_1` for `dropout`), so later stages name a Dropout by its
    place among the model's Dropouts, as the native stage knew it."""
    path = out / artifacts.TF_LAYERS
    recorded = [d["name"] for d in artifacts.load_json(path).get("dropouts", [])] if path.is_file() else []
    current = _dropout_layers(model)
    if len(recorded) != len(current):
        return {}
    return {id(layer): name for layer, name in zip(current, recorded, strict=True)}


def _dropout_layers(model) -> list:
    return [
        layer
        for layer in getattr(model, "operations", getattr(model, "layers", []))
        if type(layer).__name__ == "Dropout" and getattr(layer, "rate", 0) > 0
    ]


def _dropouts(model, sample: list, out: Path) -> list[dict[str, Any]]:
    """Each Dropout layer of a functional model: its rate, whether its input has other consumers,
    and that input's value at one sample (the native stage puts nn.Dropout where model.py computes
    that value: the inference graph has no trace of dropout)."""
    found = _dropout_layers(model)
    values = _layer_values(model, [layer.input for layer in found], sample)
    if values is None:
        return [{"name": layer.name, "rate": float(layer.rate), "restorable": False} for layer in found]
    consumers = _consumer_counts(model)
    arrays, rows = {}, []
    for layer, value in zip(found, values, strict=True):
        arrays[layer.name] = value
        shared = consumers.get(id(layer.input), 0) > 1
        rows.append({"name": layer.name, "rate": float(layer.rate), "restorable": not shared})
    artifacts.save_arrays(out / artifacts.DROPOUT_INPUTS, arrays)
    return rows


def _activity_outputs(model, sample: list, out: Path) -> list[dict[str, Any]]:
    """Each layer with an activity regularizer: its output's value at one sample (the native stage
    names the node of model.py that computes it, where train.py reads the layer's output), or
    `placeable: false` for a layer whose output is no one tensor of a functional model."""
    found = [
        layer for layer in _leaf_layers(model) if getattr(layer, "activity_regularizer", None) is not None
    ]
    values = _layer_values(model, [_single_output(layer) for layer in found], sample)
    if values is None:
        return [{"name": layer.name, "placeable": False} for layer in found]
    artifacts.save_arrays(
        out / artifacts.ACTIVITY_OUTPUTS, {layer.name: v for layer, v in zip(found, values, strict=True)}
    )
    return [{"name": layer.name, "placeable": True} for layer in found]


def _single_output(layer):
    try:
        output = layer.output
    except (AttributeError, ValueError):  # a layer called twice, a subclassed model's layer
        return None
    return output if not isinstance(output, list | tuple | dict) else None


def _layer_values(model, tensors: list, sample: list) -> list[np.ndarray] | None:
    """The values of these symbolic tensors of a functional model at one sample; None when there are
    none or one cannot be read (a layer called twice, a subclassed model: no one tensor)."""
    if not tensors or any(t is None for t in tensors) or not getattr(model, "inputs", None):
        return None
    import keras
    from keras import ops

    from pipeline.tf_worker import keras_signature

    try:
        probe = keras.Model(model.inputs, list(tensors))
        values = probe(keras_signature.call_inputs(probe, [ops.convert_to_tensor(a) for a in sample]))
    except Exception:  # noqa: BLE001 - no one tensor, or a model Keras cannot cut there
        return None
    values = values if isinstance(values, list | tuple) else [values]
    return [np.asarray(v) for v in values]


def _consumer_counts(model) -> dict[int, int]:
    counts: dict[int, int] = {}
    for operation in getattr(model, "operations", []):
        for node in getattr(operation, "_inbound_nodes", []):
            for tensor in getattr(node, "input_tensors", []):
                counts[id(tensor)] = counts.get(id(tensor), 0) + 1
    for tensor in getattr(model, "outputs", []) or []:
        counts[id(tensor)] = counts.get(id(tensor), 0) + 1
    return counts


def recorded_paths(model, out: Path) -> dict[int, str]:
    """id(variable) -> the path tf_layers.json recorded for it. A zoo model is built again after the
    export (a fresh build numbers its layers anew: `dense_3` for `dense`), so a later stage names the
    variables by their place in the model, as the native passes knew them."""
    recorded = [
        w["path"]
        for layer in artifacts.load_json(out / artifacts.TF_LAYERS)["layers"]
        for w in layer["weights"]
    ]
    current = [variable for layer in _leaf_layers(model) for variable in layer.weights]
    if len(recorded) != len(current):
        return {}
    return {id(variable): path for variable, path in zip(current, recorded, strict=True)}


def recorded_activity_names(model, out: Path) -> dict[int, str]:
    """id(layer) -> the name tf_layers.json recorded for each layer with an activity regularizer (by
    its place among them: a rebuilt zoo model numbers its layers anew)."""
    path = out / artifacts.TF_LAYERS
    recorded = (
        [a["name"] for a in artifacts.load_json(path).get("activity_outputs", [])] if path.is_file() else []
    )
    current = [
        layer for layer in _leaf_layers(model) if getattr(layer, "activity_regularizer", None) is not None
    ]
    if len(recorded) != len(current):
        return {}
    return {id(layer): name for layer, name in zip(current, recorded, strict=True)}


def _leaf_layers(model):
    """Layers that own variables directly, nested models opened up, in the model's order."""
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            yield from _leaf_layers(layer)
        else:
            yield layer  # wrappers (Bidirectional) list their sub-layers' variables as their own


def _config(layer) -> dict[str, Any]:
    try:
        config = layer.get_config()
    except Exception:  # noqa: BLE001 - a custom layer without (or with a broken) get_config
        return {}  # the settings are a summary for the port's checks; the weights are what matters
    kept = {k: _plain(config[k]) for k in _CONFIG_KEYS if k in config}
    inner = getattr(layer, "forward_layer", None)  # Bidirectional: the wrapped RNN's settings
    if inner is not None:
        kept["layer_class"] = type(inner).__name__
        kept["layer"] = _config(inner)
    return kept


def _io_shapes(layer) -> dict[str, Any]:
    """The layer's input and output shapes (batch as None) and, for a layer fed by a Flatten, the shape
    that Flatten flattened: `verify` reorders a Dense kernel's rows for a channels-first port."""
    try:
        found: dict[str, Any] = {
            "input_shape": _shape(layer.input),
            "output_shape": _shape(layer.output),
        }
        source = layer._inbound_nodes[0].input_tensors[0]._keras_history.operation
        if type(source).__name__ == "Flatten":
            found["flatten_from"] = _shape(source.input)
        return found
    except (AttributeError, IndexError, ValueError, TypeError):
        return {}  # a layer used twice or a subclassed model: shapes unknown


def _shape(tensor) -> list | None:
    if isinstance(tensor, (list, tuple)):
        return _shape(tensor[0]) if tensor else None
    return [None if d is None else int(d) for d in tensor.shape]


def _short_name(variable, layer) -> str:
    # Keras 3: variable.name is 'kernel'; tf_keras: 'dense/kernel:0'.
    name = variable.name.split("/")[-1].split(":")[0]
    return name or layer.name


def _plain(value):
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value if isinstance(value, (int, float, str, bool, type(None), list)) else str(value)
