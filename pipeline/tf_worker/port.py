"""`tf2torch verify`, TF side (TF worker): the reference outputs, the Keras variables and layers, and
each weighted layer's input and output on the first input batch.

The torch side transfers the variables into the hand-written module (pipeline/torch_worker/port/) and uses the
per-layer values to name the first layer where the port parts ways with TF and to tell how the port
flattens feature maps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pipeline import artifacts
from pipeline.config import ModelConfig
from pipeline.errors import UsageError
from pipeline.tf_worker import stages as tf_stages


def port_load(cfg: ModelConfig, fmt: str, out: Path, state: dict[str, Any]) -> dict[str, Any]:
    details = tf_stages.load(cfg, fmt, out, state)
    model = state["model"]
    if not hasattr(model, "write_weights"):
        raise UsageError(
            f"verify transfers Keras layers' weights, so it needs a Keras model (.keras, .h5 or a zoo id); "
            f"{cfg.model} is a {fmt} model"
        )
    details["keras_weights"] = model.write_weights(out)
    feeds = {name: batch[:1][0] for name, batch in artifacts.load_arrays(out / artifacts.INPUTS).items()}
    values, note = layer_values(model.model, feeds, [i.name for i in model.inputs])
    artifacts.save_arrays(out / artifacts.PORT_TF_VALUES, values)
    details["layer_values"] = note or f"{len(values)} arrays"
    return details


def layer_values(model, feeds: dict[str, np.ndarray], input_names: list[str]):
    """Each weighted layer's first input and its output, keyed '<layer>:in' / '<layer>:out'. A model
    whose layers have no single symbolic input and output (subclassed, shared layers) gives none."""
    import keras

    wanted: dict[str, Any] = {}
    try:
        for layer in _weighted_layers(model):
            wanted[f"{layer.name}:in"] = _first(layer.input)
            wanted[f"{layer.name}:out"] = _first(layer.output)
        probe = keras.Model(model.inputs, wanted)
        values = probe([feeds[n] for n in input_names] if len(input_names) > 1 else feeds[input_names[0]])
    except (AttributeError, ValueError, TypeError) as exc:
        return {}, f"per-layer values unavailable: {exc}"
    return {k: np.asarray(v) for k, v in values.items()}, None


def _weighted_layers(model):
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            yield from _weighted_layers(layer)
        elif layer.weights:
            yield layer


def _first(tensor):
    return tensor[0] if isinstance(tensor, (list, tuple)) else tensor
