"""Built-in models, addressed by id: the porting guide's demo models, the layer families,
keras.applications and KerasHub backbones (pipeline/tf_worker/kerashub.py).

Models are built from code with seeded initialisers (no weights can be downloaded). Weights that
Keras initialises to constants (biases, BatchNorm statistics) are re-drawn from the same seed so that
a conversion bug cannot hide behind zeros and ones; `zoo_weights: initial` keeps Keras's initial values
instead (and the residual scales below), the never-fitted model a person trains from scratch.

The scale at the end of each residual branch (the BatchNorm or ConvNeXt LayerScale whose output is
added back to the trunk) is drawn from U(0.1, 0.3), as trained residual networks end up and as
"zero-init residual" training starts them. Left at Keras's initial values, the branches either
compound (gamma 1: 100+ EfficientNetV2 blocks drive logits to 1e4 and float32 rounding makes the
network disagree with itself) or vanish (LayerScale 1e-6: every ConvNeXt block's output is invisible
at any useful tolerance, so a conversion bug inside one could not be seen).
"""

from __future__ import annotations

import difflib

import numpy as np

from pipeline.errors import ConfigError
from pipeline.tf_worker import kerashub

# The three models of the classic TF-to-PyTorch porting guide; `make convert` runs these.
DEMO_MODELS = ("demo.linear_regression", "demo.cnn", "demo.lstm")


def _demo_linear_regression(keras):
    return keras.Sequential(
        [keras.Input((1,), name="x"), keras.layers.Dense(1, name="dense")], name="linear_regression"
    )


def _demo_cnn(keras):
    return keras.Sequential(
        [
            keras.Input((28, 28, 1), name="image"),
            keras.layers.Conv2D(32, (3, 3), activation="relu", name="conv2d"),
            keras.layers.MaxPooling2D((2, 2), name="max_pooling2d"),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(10, activation="softmax", name="dense"),
        ],
        name="cnn",
    )


def _demo_lstm(keras):
    return keras.Sequential(
        [
            keras.Input((12, 8), name="sequence"),
            keras.layers.LSTM(64, name="lstm"),
            keras.layers.Dense(1, name="dense"),
        ],
        name="lstm",
    )


_DEMO_BUILDERS = {
    "demo.linear_regression": _demo_linear_regression,
    "demo.cnn": _demo_cnn,
    "demo.lstm": _demo_lstm,
}


def known_ids() -> list[str]:
    import keras

    from pipeline.tf_worker.families import BUILDERS
    from pipeline.tf_worker.tflite_apps import BUILDERS as TFLITE_APPS

    apps = [f"keras.applications.{n}" for n in dir(keras.applications) if n[:1].isupper()]
    return (
        sorted(_DEMO_BUILDERS) + sorted(BUILDERS) + sorted(TFLITE_APPS) + sorted(apps) + kerashub.known_ids()
    )  # and kecam.<module>.<Model>[.h5], any model of that library (kecam.py)


def build(model_id: str, input_shape: tuple[int, ...] | None = None, seed: int = 0, redraw: bool = True):
    """`redraw`: the weights Keras initialises to constants drawn from the seed (config: zoo_weights)."""
    import keras

    from pipeline.tf_worker.families import BUILDERS as FAMILY_BUILDERS
    from pipeline.tf_worker.tflite_apps import BUILDERS as TFLITE_APPS

    keras.utils.set_random_seed(seed)
    fixed = {**_DEMO_BUILDERS, **FAMILY_BUILDERS, **TFLITE_APPS}
    if model_id in fixed:
        model = fixed[model_id](keras)
    elif kerashub.is_kerashub_id(model_id):
        model = kerashub.build(model_id)
    elif model_id.startswith("keras.applications.") and model_id[len("keras.applications.") :][:1].isupper():
        name = model_id[len("keras.applications.") :]
        constructor = getattr(keras.applications, name, None)
        if constructor is None:
            raise ConfigError(_unknown(model_id))
        kwargs = _application_kwargs(constructor, keras, input_shape)
        try:
            model = constructor(**kwargs)
        except ValueError as exc:
            raise ConfigError(f"{model_id} cannot be built with input shape {input_shape}: {exc}") from None
    else:
        raise ConfigError(_unknown(model_id))
    if isinstance(model, bytes):
        return model
    rng = np.random.default_rng(seed)
    if redraw:
        randomize_constant_weights(model, rng)
        _scale_residual_branches(model, rng)
    return model


def _application_kwargs(constructor, keras, input_shape) -> dict:
    """weights=None (nothing can be downloaded), a named input, and logits rather than a saturated softmax."""
    import inspect

    accepted = inspect.signature(constructor).parameters
    kwargs: dict = {"weights": None}
    if input_shape is not None:
        kwargs["input_shape"] = tuple(input_shape)
    if "input_tensor" in accepted:
        shape = tuple(input_shape) if input_shape is not None else None
        if shape is None:
            default = constructor(weights=None).inputs[0].shape[1:]  # the architecture's default size
            shape = tuple(default)
        kwargs["input_tensor"] = keras.Input(shape, name="image")
    if "classifier_activation" in accepted:
        kwargs["classifier_activation"] = None
    return kwargs


def randomize_constant_weights(model, rng: np.random.Generator) -> None:
    for variable in model.weights:
        value = np.asarray(variable.numpy())
        if (
            not value.size
            or not np.all(value == value.flat[0])
            or not np.issubdtype(value.dtype, np.floating)
        ):
            continue
        if value.flat[0] == 0:  # biases, BatchNorm beta and moving mean: small, both signs
            drawn = rng.uniform(-0.2, 0.2, size=value.shape)
        else:
            # gamma, moving variance, LayerNorm scale: scaled, keeping the sign (variances stay positive).
            # A wider spread compounds over 100+ BatchNorm layers: with U(0.5, 1.5) EfficientNetV2B3's
            # logits reached 398 and float32 rounding alone made the frameworks differ by 1.2.
            drawn = value * rng.uniform(0.8, 1.2, size=value.shape)
        variable.assign(drawn.astype(value.dtype))


# Layers that pass values through unchanged at inference, between a residual branch's last scale and
# the Add that closes the branch.
_INFERENCE_IDENTITY = ("Dropout", "StochasticDepth")
_BRANCH_SCALES = {"BatchNormalization": "gamma", "LayerScale": "gamma"}


def _scale_residual_branches(model, rng: np.random.Generator) -> None:
    """Draws the last scale of every branch that an Add puts back onto an identity skip."""
    # `operations`, not `layers`: ConvNeXt closes its blocks with `inputs + x`, an op that is no layer.
    for operation in getattr(model, "operations", ()):
        if type(operation).__name__ != "Add":
            continue
        for node in operation._inbound_nodes:
            sources = [t._keras_history.operation for t in node.input_tensors]
            # The identity skip is the tensor the branch forked from: it has other consumers too.
            # (ResNet's projection shortcut, BatchNorm on both sides, has no such fork: left alone.)
            if not any(len(source._outbound_nodes) > 1 for source in sources):
                continue
            for source in sources:
                producer = _skip_identities(source)
                attribute = _BRANCH_SCALES.get(type(producer).__name__)
                if attribute is None or len(source._outbound_nodes) > 1:
                    continue
                scale = getattr(producer, attribute)
                if scale is None:  # BatchNormalization(scale=False)
                    continue
                scale.assign(rng.uniform(0.1, 0.3, size=tuple(scale.shape)).astype(scale.dtype))


def _skip_identities(layer):
    while _is_inference_identity(layer) and layer._inbound_nodes:
        layer = layer._inbound_nodes[0].input_tensors[0]._keras_history.operation
    return layer


def _is_inference_identity(layer) -> bool:
    name = type(layer).__name__
    if name == "Activation":  # ConvNeXt closes its blocks with Activation("linear")
        return getattr(layer.activation, "__name__", "") == "linear"
    return name in _INFERENCE_IDENTITY


def _unknown(model_id: str) -> str:
    close = difflib.get_close_matches(model_id, known_ids(), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return f"unknown zoo id '{model_id}'{hint} Known ids: demo.*, family.*, tflite_app.*, keras.applications.<Name>, keras_hub.<Backbone>, kecam.<module>.<Model>[.h5]"
