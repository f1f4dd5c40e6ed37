"""The training sweep's cases, from Keras's own lists (run in a TensorFlow process).

Every class Keras exports in `keras.optimizers` (each with every option its constructor takes set away
from its default, and the options all optimizers share: clipnorm, clipvalue, global_clipnorm,
use_ema, weight_decay, gradient_accumulation_steps, loss_scale_factor), `keras.losses`,
`keras.regularizers` (as a kernel regularizer, and L2 as an activity regularizer) and
`keras.optimizers.schedules` becomes one small compiled Keras model, saved as `<case>.keras` beside a
`cases.json` manifest. The lists are read from the installed Keras, not written here: a class a new
Keras adds is a new case.

    python -m pipeline.coverage.training_cases OUT_DIR
"""

from __future__ import annotations

import inspect
import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# The options every Keras optimizer takes, each set to a value that changes the update.
SHARED_OPTIONS: dict[str, Any] = {
    "clipnorm": 0.05,
    "clipvalue": 0.01,
    "global_clipnorm": 0.05,
    "use_ema": True,
    "weight_decay": 0.05,
    "gradient_accumulation_steps": 2,
    "loss_scale_factor": 128.0,
}
# Constructor arguments that need a value of their own kind (or are no setting of the update).
_OWN_VALUES: dict[str, Any] = {"nesterov": True, "amsgrad": True, "centered": True, "relative_step": False}
_NOT_OPTIONS = {"self", "learning_rate", "name", "kwargs", "ema_momentum", "ema_overwrite_frequency"}
# Optimizers that wrap others: swept around SGD.
_WRAPPERS = {"LossScaleOptimizer", "MultiOptimizer"}

# What each loss trains on: the model's last activation and the targets the check draws. Losses not
# named here train a linear output on real targets.
_LOSS_OUTPUTS: dict[str, str] = {
    "BinaryCrossentropy": "sigmoid",
    "BinaryFocalCrossentropy": "sigmoid",
    "CategoricalCrossentropy": "softmax",
    "CategoricalFocalCrossentropy": "softmax",
    "CategoricalGeneralizedCrossEntropy": "softmax",
    "SparseCategoricalCrossentropy": "softmax",
    "KLDivergence": "softmax",
    "CategoricalHinge": "softmax",
    "Poisson": "softplus",
    "MeanSquaredLogarithmicError": "softplus",
    "Dice": "sigmoid",
    "Tversky": "sigmoid",
}
_SCHEDULE_ARGUMENTS: dict[str, dict[str, Any]] = {
    "CosineDecay": {"initial_learning_rate": 0.01, "decay_steps": 4},
    "CosineDecayRestarts": {"initial_learning_rate": 0.01, "first_decay_steps": 2},
    "ExponentialDecay": {"initial_learning_rate": 0.01, "decay_steps": 2, "decay_rate": 0.5},
    "InverseTimeDecay": {"initial_learning_rate": 0.01, "decay_steps": 2, "decay_rate": 0.5},
    "PiecewiseConstantDecay": {"boundaries": [1, 3], "values": [0.01, 0.005, 0.001]},
    "PolynomialDecay": {"initial_learning_rate": 0.01, "decay_steps": 4},
}


def keras_lists(keras) -> dict[str, list[str]]:
    """The class names Keras exports in each list the sweep measures against."""

    def exported(module, base) -> list[str]:
        found = {o.__name__ for o in vars(module).values() if inspect.isclass(o) and issubclass(o, base)}
        return sorted(found - {base.__name__})

    return {
        "optimizers": exported(keras.optimizers, keras.optimizers.Optimizer),
        "losses": exported(keras.losses, keras.losses.Loss),
        "regularizers": exported(keras.regularizers, keras.regularizers.Regularizer),
        "schedules": exported(keras.optimizers.schedules, keras.optimizers.schedules.LearningRateSchedule),
    }


def cases(keras) -> list[dict[str, Any]]:
    """[{name, list, item, option, build arguments}] for every entry of every list."""
    lists = keras_lists(keras)
    found: list[dict[str, Any]] = []
    for name in lists["optimizers"]:
        found.append(_case("optimizers", name, "default", optimizer=(name, {})))
        if name in _WRAPPERS:
            continue
        own = _own_options(getattr(keras.optimizers, name))
        for option, value in {**own, **SHARED_OPTIONS}.items():
            found.append(_case("optimizers", name, option, optimizer=(name, {option: value})))
    for name in lists["losses"]:
        found.append(_case("losses", name, "default", loss=name, activation=_LOSS_OUTPUTS.get(name)))
    for name in lists["regularizers"]:
        found.append(_case("regularizers", name, "kernel_regularizer", regularizer=name))
    found.append(_case("regularizers", "L2", "activity_regularizer", regularizer="L2", activity=True))
    for name in lists["schedules"]:
        found.append(_case("schedules", name, "default", schedule=name))
    found.append(_case("schedules", "CosineDecay", "warmup_steps", schedule="CosineDecay", warmup=True))
    return found


def _case(list_name: str, item: str, option: str, **build: Any) -> dict[str, Any]:
    return {
        "name": f"{list_name}.{item}.{option}",
        "list": list_name,
        "item": item,
        "option": option,
        **build,
    }


def _own_options(cls) -> dict[str, Any]:
    """Each constructor argument of this optimizer class (not the shared ones) away from its default."""
    options = {}
    for name, parameter in inspect.signature(cls.__init__).parameters.items():
        if name in _NOT_OPTIONS or name in SHARED_OPTIONS or parameter.default is parameter.empty:
            continue
        default = parameter.default
        if name in _OWN_VALUES:
            options[name] = _OWN_VALUES[name]
        elif isinstance(default, bool):
            options[name] = not default
        elif isinstance(default, float):
            options[name] = default * 0.5 if default else 0.01
        elif isinstance(default, int):
            options[name] = default + 1
    return options


def build(keras, case: dict[str, Any]):
    """The case's compiled model: Dense(12) -> Dense(8, tanh) -> Dense(4), on 6 features."""
    layers = keras.layers
    keras.utils.set_random_seed(0)
    regularizer = None
    if case.get("regularizer"):
        cls = getattr(keras.regularizers, case["regularizer"])
        regularizer = cls(0.05) if case["regularizer"] != "L1L2" else cls(0.02, 0.03)
    features = keras.Input((6,), name="features")
    h = layers.Dense(
        12,
        activation="relu",
        bias_initializer="random_normal",
        kernel_regularizer=None if case.get("activity") else regularizer,
        activity_regularizer=regularizer if case.get("activity") else None,
        name="hidden",
    )(features)
    h = layers.Dense(8, activation="tanh", bias_initializer="random_normal", name="mid")(h)
    outputs = layers.Dense(4, activation=case.get("activation"), name="out")(h)
    model = keras.Model(features, outputs)
    model.compile(optimizer=_optimizer(keras, case), loss=_loss(keras, case))
    return model


def _optimizer(keras, case: dict[str, Any]):
    learning_rate: Any = 0.01
    if case.get("schedule"):
        arguments = dict(_SCHEDULE_ARGUMENTS.get(case["schedule"], {"initial_learning_rate": 0.01}))
        if case.get("warmup"):
            arguments.update(warmup_steps=2, warmup_target=0.02)
        learning_rate = getattr(keras.optimizers.schedules, case["schedule"])(**arguments)
    name, options = case.get("optimizer") or ("SGD", {})
    if name == "LossScaleOptimizer":
        return keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(learning_rate))
    if name == "MultiOptimizer":
        # SGD for every weight but the output layer's, which Adam steps.
        choice = keras.optimizers.OptimizerMap(
            keras.optimizers.SGD(learning_rate), {"out/.*": keras.optimizers.Adam(learning_rate)}
        )
        return keras.optimizers.MultiOptimizer(choice)
    return getattr(keras.optimizers, name)(learning_rate=learning_rate, **options)


def _loss(keras, case: dict[str, Any]):
    return getattr(keras.losses, case["loss"])() if case.get("loss") else keras.losses.MeanSquaredError()


def main(argv: list[str]) -> int:
    import keras

    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for case in cases(keras):
        try:
            build(keras, case).save(out / f"{case['name']}.keras")
        except Exception as exc:  # noqa: BLE001 - Keras itself refuses the setting: a case that cannot be
            case["unbuildable"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        written.append(case)
    manifest = {"keras": keras.__version__, "lists": keras_lists(keras), "cases": written}
    (out / "cases.json").write_text(json.dumps(manifest, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
