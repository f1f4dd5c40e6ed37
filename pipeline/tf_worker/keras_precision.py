"""A Keras model made to compute in float64, for the training check (TF worker).

Trained in float32, two frameworks part ways for reasons that have nothing to do with the conversion:
a ReLU input within rounding of zero gates one way in TensorFlow and the other in torch, Adam divides
a BatchNorm-cancelled bias gradient (pure rounding noise) by its own square root, and over a few steps
of a deep network these grow to percent-sized differences (ResNet50 at 64x64: one ReLU flipped in
conv5_block1 puts 0.5% into every gradient before it). In float64 the same rounding is 1e-16, so what
the check still finds is the mapping: a loss, an optimizer formula, a parameter's layout.

Keras 3 models are widened in place, whatever built them (a subclassed model, custom layers): every
layer's dtype policy becomes float64 and every float variable gets a float64 value under the same
Keras variable, so the optimizer and the recorded variable paths still find it. The result is
checked (float64 outputs that agree with the float32 reference); a model that does not widen
(legacy tf_keras, a layer that casts to float32 itself) trains in its own precision, with the reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import tensorflow as tf

from pipeline.tf_worker import keras_signature

_NARROW_FLOATS = ("float16", "bfloat16", "float32")
# The float64 model's outputs must be the float32 model's up to float32 rounding of a deep network;
# anything further off is a model that did not widen as a whole.
_AGREEMENT = 1e-3


def widen_in_place(model, inputs: list[np.ndarray], references: list[np.ndarray]) -> str | None:
    """Make `model` compute in float64. None when it does, else why not (the model may then be
    half-widened: train a fresh copy in float32)."""
    if type(model).__module__.startswith("tf_keras"):
        return "legacy tf_keras models keep their float32 variables"
    try:
        for layer in [model, *nested_layers(model)]:
            if _is_narrow(getattr(layer.dtype_policy, "name", None)):
                layer.dtype_policy = "float64"
        for variable in model.weights:
            if _is_narrow(variable.dtype):
                _widen_variable(variable)
            _widen_regularizer(variable)
        feeds = [tf.constant(widened(x)) for x in inputs]
        outputs = tf.nest.flatten(model(keras_signature.call_inputs(model, feeds), training=False))
        for loss in model.losses:  # regularizers run too: fit() adds them to the loss
            if loss.dtype != tf.float64:
                return f"a loss the model adds (a regularizer) is {loss.dtype.name}"
    except Exception as exc:  # noqa: BLE001 - any failure means: train in the model's own precision
        return f"it does not run in float64 ({type(exc).__name__}: {_first_line(exc)})"
    for index, (output, reference) in enumerate(zip(outputs, references, strict=True)):
        value = np.asarray(output)
        if np.issubdtype(reference.dtype, np.floating) and value.dtype != np.float64:
            return f"output {index} is still {value.dtype} (a layer casts to it itself)"
        scale = float(np.abs(reference).max()) if reference.size else 0.0
        error = float(np.abs(value.astype(np.float64) - reference).max()) if reference.size else 0.0
        if error > _AGREEMENT * max(scale, 1.0):
            return f"in float64, output {index} differs from the float32 model's by {error:.3g}"
    return None


@contextmanager
def floatx(flavor, precision: str) -> Iterator[None]:
    """Keras's default float type set to `precision` while objects that read it are made."""
    saved = flavor.backend.floatx()
    flavor.backend.set_floatx(precision)
    try:
        yield
    finally:
        flavor.backend.set_floatx(saved)


def _widen_regularizer(variable) -> None:
    """A weight regularizer's float tensors widened too: some keep a tensor made when they were built
    (OrthogonalRegularizer's factor, float32), which a float64 weight cannot be multiplied with."""
    regularizer = getattr(variable, "regularizer", None)
    for name, value in list(vars(regularizer).items()) if regularizer is not None else []:
        if tf.is_tensor(value) and _is_narrow(value.dtype.name):
            setattr(regularizer, name, tf.cast(value, tf.float64))


def widened(array: np.ndarray) -> np.ndarray:
    return array.astype(np.float64) if np.issubdtype(array.dtype, np.floating) else array


def _widen_variable(variable) -> None:
    """The Keras variable keeps its identity (the optimizer and the recorded paths key on it); its
    TensorFlow value is replaced by a float64 one."""
    value = np.asarray(variable.numpy(), np.float64)
    variable._value = tf.Variable(value, trainable=variable.trainable, name=variable.name)
    variable._dtype = "float64"


def _is_narrow(dtype: Any) -> bool:
    return str(dtype) in _NARROW_FLOATS


def nested_layers(model):
    """Every layer inside the model, nested ones (an RNN's cell, a Bidirectional's two RNNs) too."""
    flatten = getattr(model, "_flatten_layers", None)
    if flatten is not None:
        yield from flatten(include_self=False, recursive=True)
        return
    for layer in getattr(model, "layers", []):
        yield layer
        yield from nested_layers(layer)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else ""
