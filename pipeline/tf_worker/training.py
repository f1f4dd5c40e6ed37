"""Stage `tf_training` (TF worker): the Keras model's training setup mapped onto PyTorch, and with
`training_check: N`, N optimizer steps in TensorFlow from the file's weights on seeded batches.

Writes training_setup.json (the mapping, with every unmapped setting as a TODO) and, for the check,
training_batches.npz (each step's inputs and targets) and tf_training.npz (the loss of each step,
every variable's change over the steps and the first step's gradients). Both sides compute in
float64 unless `training_precision: float32` (pipeline/tf_worker/keras_precision.py says why). Dropout
is disabled on both sides (rate 0): its random masks cannot be matched across frameworks. BatchNorm
runs in training mode, as in fit().
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from pipeline import artifacts
from pipeline.common import training_mapping as mapping
from pipeline.config import ModelConfig
from pipeline.errors import UsageError
from pipeline.tf_worker import compile_config, keras_precision, keras_signature, keras_weights


def tf_training(cfg: ModelConfig, fmt: str, out: Path, state: dict[str, Any]) -> dict[str, Any]:
    model = state["model"].model
    if not hasattr(model, "trainable_variables"):
        raise UsageError(f"--training needs a Keras model; {cfg.model} loads as {type(model).__name__}")
    given = cfg.compile.model_dump() if cfg.compile is not None else None
    names = _output_names(model, state["model"])
    references = list(artifacts.load_arrays(out / artifacts.OUTPUTS["tf"]).values())
    outputs = [{"name": n, "rank": r.ndim - 1} for n, r in zip(names, references, strict=True)]
    setup = mapping.map_setup(compile_config.read(cfg.model, fmt, given), outputs)
    setup["dropout"] = _disable_dropout(model, keras_weights.recorded_dropout_names(model, out))
    setup["regularizers"], todos = _regularizers(
        model, keras_weights.recorded_paths(model, out), keras_weights.recorded_activity_names(model, out)
    )
    setup["todos"] += todos
    setup["variables"] = _variable_records(model, setup, keras_weights.recorded_paths(model, out))
    setup["todos"] += _mixed_precision_todos(model)
    artifacts.save_json(out / artifacts.TRAINING_SETUP, setup)
    details: dict[str, Any] = {"todos": setup["todos"], "dropout_disabled": setup["dropout"]}
    if not cfg.training_check:
        return details
    if cfg.layout != "nhwc":
        raise UsageError("--training-check needs `layout: nhwc` (the layout train.py's data has)")
    input_names = [i.name for i in state["model"].inputs]
    batches = _batches(cfg, out, setup["losses"], references, input_names)
    model, precision = _in_precision(cfg, state["model"], model, batches, input_names, references)
    setup.update(precision)  # precision (and precision_note, when float64 could not be had)
    artifacts.save_json(out / artifacts.TRAINING_SETUP, setup)  # the torch side trains in it too
    paths = keras_weights.recorded_paths(model, out)
    try:
        losses, updates, gradients = _train(model, setup, batches, cfg.training_check, paths)
    except (tf.errors.InvalidArgumentError, TypeError) as exc:
        if setup.get("precision") != "float64":
            raise
        # Keras's own training step cannot run in float64 (Muon mixes its float32 learning rate in):
        # the check runs in float32 on a fresh copy, and says so.
        first_line = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
        model, precision = _float32_copy(
            state["model"], f"Keras's training step fails in float64 ({type(exc).__name__}: {first_line})"
        )
        setup.update(precision)
        artifacts.save_json(out / artifacts.TRAINING_SETUP, setup)
        paths = keras_weights.recorded_paths(model, out)
        losses, updates, gradients = _train(model, setup, batches, cfg.training_check, paths)
    artifacts.save_arrays(out / artifacts.TRAINING_BATCHES, batches)
    artifacts.save_arrays(
        out / artifacts.TF_TRAINING,
        {"loss": np.asarray(losses, np.float64)}
        # Differences and gradients are small numbers of their own: float32 holds them to 1e-7.
        | {f"update:{k}": _stored(v) for k, v in updates.items()}
        | {f"grad:{k}": _stored(v) for k, v in gradients.items()},
    )
    details.update(steps=cfg.training_check, tf_losses=losses, **precision)
    return details


def _in_precision(cfg: ModelConfig, loaded, model, batches, input_names, references):
    """The model to train, widened to float64 unless the config asks for its own precision (or it
    cannot be widened: then a fresh copy in float32, and the reason)."""
    if cfg.training_precision == "float32":
        return model, {"precision": "float32"}
    # Step 0 trains on sample 0 of inputs.npz, whose outputs the reference holds.
    sample = [batches[f"input:{name}"][0] for name in input_names]
    reason = keras_precision.widen_in_place(model, sample, [r[0] for r in references])
    if reason is None:
        return model, {"precision": "float64"}
    return _float32_copy(loaded, reason)


def _float32_copy(loaded, reason: str):
    """The model as the file has it (float32), its dropout disabled, and the note that says why."""
    fresh = loaded.fresh()
    _disable_dropout(fresh)
    return fresh, {"precision": "float32", "precision_note": f"float64 was asked for, but {reason}"}


def _stored(value: np.ndarray) -> np.ndarray:
    return value.astype(np.float32) if value.dtype == np.float64 else value


def _output_names(model, loaded) -> list[str]:
    """The Keras name of each output, in the order the outputs are saved and model.py returns them
    (tf.nest.flatten: a dict's keys sorted)."""
    structure = getattr(model, "_outputs_struct", None)
    if isinstance(structure, dict):
        return tf.nest.flatten({key: key for key in structure})
    names = list(getattr(model, "output_names", None) or [])
    count = len(loaded.outputs)
    return names if len(names) == count else [f"output_{i}" for i in range(count)]


def _batches(
    cfg: ModelConfig,
    out: Path,
    losses: list[dict[str, Any]],
    references: list[np.ndarray],
    input_names: list[str],
) -> dict[str, np.ndarray]:
    """Step i trains on sample i of inputs.npz (cycling), with targets drawn for each loss: one-hot
    rows, class indices, 0/1 values or normal values, seeded. One output: `targets`; several:
    `targets:<output name>`."""
    feeds = artifacts.load_arrays(out / artifacts.INPUTS)
    steps, samples = cfg.training_check, references[0].shape[0]
    rng = np.random.default_rng(cfg.seed + 1)
    batches = {f"input:{n}": np.stack([feeds[n][i % samples] for i in range(steps)]) for n in input_names}
    for loss in losses:
        reference = references[loss["index"]]
        key = "targets" if len(references) == 1 else f"targets:{loss['output']}"
        batches[key] = _targets(loss["target"], (steps, *reference.shape[1:]), reference.dtype, rng)
    return batches


def _targets(target: str, shape: tuple[int, ...], dtype, rng: np.random.Generator) -> np.ndarray:
    if target == "one_hot":
        return np.eye(shape[-1], dtype=np.float32)[rng.integers(0, shape[-1], shape[:-1])]
    if target == "class_index":
        return rng.integers(0, shape[-1], shape[:-1]).astype(np.int64)
    if target == "binary":
        return rng.integers(0, 2, shape).astype(np.float32)
    if target == "distribution":  # rows of class probabilities
        weights = rng.random(shape) + 0.1
        return (weights / weights.sum(-1, keepdims=True)).astype(dtype)
    if target == "positive":  # counts, rates
        return np.abs(rng.standard_normal(shape)).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def _train(model, setup: dict[str, Any], batches: dict[str, np.ndarray], steps: int, paths: dict[int, str]):
    """Keras's fit() step by step: the weighted sum of each output's loss, the optimizer's update.
    Also returns the first step's gradient of every trainable variable, taken before any update."""
    flavor = _flavor(model)
    keras_setup = setup["keras"]
    config = dict(keras_setup["optimizer"]["config"])
    if isinstance(config.get("learning_rate"), dict):  # a schedule given in a config may lack its module
        config["learning_rate"] = {"module": "keras.optimizers.schedules", **config["learning_rate"]}
    # A Keras loss computes in floatx (it casts the outputs to it), an optimizer keeps its learning
    # rate in it: in float64 both are made while floatx is float64.
    with keras_precision.floatx(flavor, setup.get("precision", "float32")):
        optimizer = _keras_object(
            flavor.optimizers, {"class_name": keras_setup["optimizer"]["class_name"], "config": config}
        )
        losses = [(loss, _keras_object(flavor.losses, _keras_loss(setup, loss))) for loss in setup["losses"]]
    names = [k for k in batches if k.startswith("input:")]
    several = len(setup["outputs"]) > 1
    # In float64 the data is too (the same values: float32 widens exactly).
    feed = keras_precision.widened if setup.get("precision") == "float64" else np.asarray
    before = _variables(model, paths)
    values, first_gradients = [], {}
    for step in range(steps):
        inputs = [tf.constant(feed(batches[n][step])) for n in names]
        with tf.GradientTape() as tape:
            outputs = tf.nest.flatten(model(keras_signature.call_inputs(model, inputs), training=True))
            total = 0.0
            for loss, function in losses:
                key = f"targets:{loss['output']}" if several else "targets"
                targets = tf.constant(feed(batches[key][step]))
                # A loss given by name is a function with one value per sample: fit() averages them.
                total += loss["weight"] * tf.reduce_mean(function(targets, outputs[loss["index"]]))
            # fit() minimises the compiled loss plus model.losses (weight and activity regularizers,
            # add_loss()): the check compares what Keras trains, mapped in train.py or not.
            total += sum(tf.reduce_sum(tf.cast(extra, total.dtype)) for extra in model.losses)
            # fit() differentiates the loss times the optimizer's loss scale (loss_scale_factor, a
            # LossScaleOptimizer's dynamic scale); the optimizer divides it out again.
            scaled = optimizer.scale_loss(total) if hasattr(optimizer, "scale_loss") else total
        variables = model.trainable_variables
        gradients = tape.gradient(scaled, variables)
        if step == 0:
            scale = float(scaled / total) if float(total) else 1.0
            first_gradients = {
                # An embedding's gradient is IndexedSlices: densified.
                _path(v, paths): np.zeros_like(v.numpy())
                if g is None
                else np.asarray(tf.convert_to_tensor(g)) / scale
                for v, g in zip(variables, gradients, strict=True)
            }
        optimizer.apply_gradients(
            [(g, v) for g, v in zip(gradients, variables, strict=True) if g is not None]
        )
        values.append(float(total))
    if hasattr(optimizer, "finalize_variable_values"):
        optimizer.finalize_variable_values(model.trainable_variables)  # fit()'s last act (use_ema)
    after = _variables(model, paths)
    return values, {k: after[k] - before[k] for k in after}, first_gradients


def _keras_object(module, entry):
    """A Keras optimizer or loss from its name or config: `get` knows the common ones, the class
    itself every one it exports (Lamb, CategoricalGeneralizedCrossEntropy)."""
    try:
        return module.get(entry)
    except ValueError:
        if not isinstance(entry, dict) or not hasattr(module, entry.get("class_name", "")):
            raise
        return getattr(module, entry["class_name"]).from_config(dict(entry.get("config") or {}))


def _mixed_precision_todos(model) -> list[str]:
    """Layers that Keras trains in mixed precision (float16 or bfloat16 computation, float32
    weights, the loss scaled): train.py trains in model.py's float32, so that is a TODO, never a
    silent change of what is trained."""
    mixed: dict[str, list[str]] = {}
    for layer in keras_precision.nested_layers(model):
        policy = getattr(layer, "dtype_policy", None)
        name = getattr(policy, "name", "") or ""
        if name.startswith("mixed_"):
            mixed.setdefault(name, []).append(layer.name)
    return [
        f"mixed precision {policy} ({len(names)} layer(s): {', '.join(names[:5])}"
        f"{', ...' if len(names) > 5 else ''}): not mapped; train.py trains in float32 (torch.autocast "
        f"with {policy.removeprefix('mixed_')} and a GradScaler would follow Keras)"
        for policy, names in sorted(mixed.items())
    ]


def _variable_records(model, setup: dict[str, Any], paths: dict[int, str]) -> dict[str, dict[str, Any]]:
    """Each trainable variable's Keras shape, and for Muon whether Keras steps it with AdamW (its
    own choice, by rank, path and exclude_layers): train.py's optimizer groups the parameters so."""
    entry = setup["keras"]["optimizer"]
    chooser = None
    if entry.get("class_name") == "Muon":
        try:
            chooser = _keras_object(_flavor(model).optimizers, entry)._should_use_adamw
        except (ValueError, TypeError, AttributeError):
            chooser = None
    records = {}
    for variable in model.trainable_variables:
        record: dict[str, Any] = {"shape": [int(d) for d in variable.shape]}
        if chooser is not None:
            record["adam"] = bool(chooser(variable))
        records[_path(variable, paths)] = record
    return records


def _keras_loss(setup: dict[str, Any], loss: dict[str, Any]):
    """The Keras loss entry of one output, as compile() was given it."""
    entry = setup["keras"]["loss"]
    if isinstance(entry, dict) and "class_name" not in entry:
        return entry[loss["output"]]
    if isinstance(entry, list | tuple):
        return entry[loss["index"]]
    return entry


def _path(variable, paths: dict[int, str]) -> str:
    return paths.get(id(variable)) or getattr(variable, "path", None) or variable.name


# The regularizers train.py adds to its loss (keras_compat.py has their formulas), with the config
# keys each takes.
MAPPED_REGULARIZERS = {
    "L1": ("l1",),
    "L2": ("l2",),
    "L1L2": ("l1", "l2"),
    "OrthogonalRegularizer": ("factor", "mode"),
}


# Activity regularizers train.py adds (a penalty on a layer's output, divided by its batch size).
MAPPED_ACTIVITY_REGULARIZERS = ("L1", "L2", "L1L2")


def _regularizers(
    model, paths: dict[int, str], activity_names: dict[int, str] | None = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """Each trainable variable's weight regularizer, by its path, and each layer's activity
    regularizer, by the layer's name as the load stage recorded it, for train.py; what train.py does
    not add (other classes, a legacy tf_keras model's) as TODOs."""
    found, todos = [], []
    legacy = _flavor(model).__name__ == "tf_keras"
    for variable in [] if legacy else model.trainable_variables:
        regularizer = getattr(variable, "regularizer", None)
        if regularizer is None:
            continue
        kind, path = type(regularizer).__name__, _path(variable, paths)
        config = {k: mapping._plain(v) for k, v in regularizer.get_config().items()}
        keys = MAPPED_REGULARIZERS.get(kind)
        if (
            keys is None
            or set(config) - set(keys)
            or (kind == "OrthogonalRegularizer" and len(variable.shape) != 2)
        ):
            todos.append(f"{path} regularizer {kind}({config}): not mapped (Keras adds it to the loss)")
            continue
        found.append({"variable": path, "class_name": kind, "config": config, "shape": list(variable.shape)})
    for layer in keras_precision.nested_layers(model):
        kinds = ("kernel_regularizer", "bias_regularizer", "activity_regularizer") if legacy else ()
        for kind in kinds:
            if getattr(layer, kind, None) is not None:
                todos.append(
                    f"{layer.name} {kind}: not mapped (Keras adds it to the loss; train.py does not)"
                )
    if not legacy:
        activity = _activity_regularizers(model, activity_names or {})
        found += activity[0]
        todos += activity[1]
    return found, todos


def _activity_regularizers(model, names: dict[int, str]) -> tuple[list[dict[str, Any]], list[str]]:
    found, todos = [], []
    for layer in keras_precision.nested_layers(model):
        regularizer = getattr(layer, "activity_regularizer", None)
        if regularizer is None:
            continue
        kind, name = type(regularizer).__name__, names.get(id(layer), layer.name)
        config = {k: mapping._plain(v) for k, v in regularizer.get_config().items()}
        if kind not in MAPPED_ACTIVITY_REGULARIZERS or set(config) - set(MAPPED_REGULARIZERS[kind]):
            todos.append(
                f"{name} activity_regularizer {kind}({config}): not mapped (Keras adds it to the loss; "
                "train.py does not)"
            )
            continue
        found.append({"layer": name, "class_name": kind, "config": config, "activity": True})
    return found, todos


def _variables(model, paths: dict[int, str]) -> dict[str, np.ndarray]:
    return {_path(v, paths): np.array(v.numpy()) for v in model.variables}


def _flavor(model):
    if type(model).__module__.startswith("tf_keras"):
        import tf_keras

        return tf_keras
    import keras

    return keras


def _disable_dropout(model, recorded: dict[int, str] | None = None) -> list[str]:
    """Dropout's random masks cannot be matched across frameworks: every rate set to 0, the RNN cells'
    dropout and recurrent_dropout too. A Dropout is named as the load stage recorded it (`recorded`),
    which the native stage's restored nn.Dropout layers carry."""
    disabled = []
    recorded = recorded or {}
    for layer in keras_precision.nested_layers(model):
        kind = type(layer).__name__
        # Rate 0 (a MultiHeadAttention's own Dropout by default) is nothing to disable or report.
        if "Dropout" in kind and getattr(layer, "rate", 0) > 0:
            layer.rate = 0.0
            disabled.append(f"{recorded.get(id(layer), layer.name)} ({kind})")
        elif kind == "GaussianNoise" and getattr(layer, "stddev", 0) > 0:
            layer.stddev = 0.0
            disabled.append(f"{layer.name} ({kind})")
        for rate in ("dropout", "recurrent_dropout"):
            # An RNN layer reads its cell's rates (read-only properties): the cell is set.
            if "Cell" in kind and isinstance(getattr(layer, rate, None), float) and getattr(layer, rate) > 0:
                setattr(layer, rate, 0.0)
                disabled.append(f"{layer.name} {rate} ({kind})")
    return disabled
