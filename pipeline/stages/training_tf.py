"""Stage `tf_training` (TF worker): the Keras model's training setup mapped onto PyTorch, and with
`training_check: N`, N optimizer steps in TensorFlow from the file's weights on seeded batches.

Writes training_setup.json (the mapping, with every unmapped setting as a TODO) and, for the check,
training_batches.npz (each step's inputs and targets) and tf_training.npz (the loss of each step and
every variable before and after). Dropout is disabled on both sides (rate 0): its random masks cannot
be matched across frameworks. BatchNorm runs in training mode, as in fit().
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from pipeline import artifacts
from pipeline.config import ModelConfig
from pipeline.errors import UsageError
from pipeline.stages import keras_signature
from pipeline.training import compile_config, mapping


def tf_training(cfg: ModelConfig, fmt: str, out: Path, state: dict[str, Any]) -> dict[str, Any]:
    setup = mapping.map_setup(compile_config.read(cfg.model, fmt))
    model = state["model"].model
    setup["dropout"] = _disable_dropout(model)
    artifacts.save_json(out / artifacts.TRAINING_SETUP, setup)
    details: dict[str, Any] = {"todos": setup["todos"], "dropout_disabled": setup["dropout"]}
    if not cfg.training_check:
        return details
    if len(model.outputs) != 1:
        raise UsageError(
            f"--training-check supports models with one output; this one has {len(model.outputs)}"
        )
    if cfg.layout != "nhwc":
        raise UsageError("--training-check needs `layout: nhwc` (the layout train.py's data has)")
    batches = _batches(cfg, out, setup["loss"]["target"], [i.name for i in state["model"].inputs])
    losses, before, after = _train(model, setup, batches, cfg.training_check)
    artifacts.save_arrays(out / artifacts.TRAINING_BATCHES, batches)
    artifacts.save_arrays(
        out / artifacts.TF_TRAINING,
        {"loss": np.asarray(losses, np.float64)}
        | {f"before:{k}": v for k, v in before.items()}
        | {f"after:{k}": v for k, v in after.items()},
    )
    details.update(steps=cfg.training_check, tf_losses=losses)
    return details


def _batches(cfg: ModelConfig, out: Path, target: str, input_names: list[str]) -> dict[str, np.ndarray]:
    """Step i trains on sample i of inputs.npz (cycling), with targets drawn for the loss: one-hot
    rows, class indices, 0/1 values or normal values, seeded."""
    feeds = artifacts.load_arrays(out / artifacts.INPUTS)
    reference = next(iter(artifacts.load_arrays(out / artifacts.OUTPUTS["tf"]).values()))
    steps, samples = cfg.training_check, reference.shape[0]
    rng = np.random.default_rng(cfg.seed + 1)
    shape = (steps, *reference.shape[1:])
    if target == "one_hot":
        targets = np.eye(shape[-1], dtype=np.float32)[rng.integers(0, shape[-1], shape[:-1])]
    elif target == "class_index":
        targets = rng.integers(0, shape[-1], shape[:-1]).astype(np.int64)
    elif target == "binary":
        targets = rng.integers(0, 2, shape).astype(np.float32)
    else:
        targets = rng.standard_normal(shape).astype(reference.dtype)
    batches = {f"input:{n}": np.stack([feeds[n][i % samples] for i in range(steps)]) for n in input_names}
    batches["targets"] = targets
    return batches


def _train(model, setup: dict[str, Any], batches: dict[str, np.ndarray], steps: int):
    flavor = _flavor(model)
    keras_setup = setup["keras"]
    optimizer = flavor.optimizers.get(
        {"class_name": keras_setup["optimizer"]["class_name"], "config": keras_setup["optimizer"]["config"]}
    )
    loss_fn = flavor.losses.get(keras_setup["loss"])
    names = [k for k in batches if k.startswith("input:")]
    before = _variables(model)
    losses = []
    for step in range(steps):
        inputs = [tf.constant(batches[n][step]) for n in names]
        with tf.GradientTape() as tape:
            outputs = model(keras_signature.call_inputs(model, inputs), training=True)
            # A loss given by name is a function with one value per sample: fit() averages them.
            loss = tf.reduce_mean(loss_fn(tf.constant(batches["targets"][step]), outputs))
        variables = model.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        losses.append(float(loss))
    return losses, before, _variables(model)


def _variables(model) -> dict[str, np.ndarray]:
    return {(getattr(v, "path", None) or v.name): np.array(v.numpy()) for v in model.variables}


def _flavor(model):
    if type(model).__module__.startswith("tf_keras"):
        import tf_keras

        return tf_keras
    import keras

    return keras


def _disable_dropout(model) -> list[str]:
    disabled = []
    for layer in _layers(model):
        kind = type(layer).__name__
        if "Dropout" in kind and hasattr(layer, "rate"):
            layer.rate = 0.0
            disabled.append(f"{layer.name} ({kind})")
        elif kind == "GaussianNoise" and hasattr(layer, "stddev"):
            layer.stddev = 0.0
            disabled.append(f"{layer.name} ({kind})")
    return disabled


def _layers(model):
    for layer in getattr(model, "layers", []):
        yield layer
        if hasattr(layer, "layers"):
            yield from _layers(layer)
