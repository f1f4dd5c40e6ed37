"""Keras compile settings -> the PyTorch optimizer, loss and metrics that compute the same thing.

Where torch's own class computes what Keras computes (SGD with momentum or Nesterov, MSE, MAE,
Huber, cross-entropy on logits) it is used with translated arguments. Where it does not, train.py
gets a short class or function from keras_compat.py that follows Keras's formula: Adam/AdamW (Keras
adds epsilon to sqrt(v) before the bias correction, torch after it: with epsilon=1e-3 the first step
differs by a factor of ~30 in the denominator), RMSprop and Adagrad (epsilon inside the square root),
cross-entropy on probabilities (Keras renormalises and clips to [1e-7, 1 - 1e-7]).

Every Keras setting ends up in `settings` (mapped) or `todos` (not mapped, with the Keras value):
nothing is dropped silently. No framework is imported.
"""

from __future__ import annotations

import os
from typing import Any

# Keras 3's defaults of each optimizer's own settings, for compile(optimizer="adam") and for keys a
# config leaves out. Each maps to keras_compat.py's Keras<Name> class, which takes the same names.
OPTIMIZER_DEFAULTS: dict[str, dict[str, Any]] = {
    "SGD": {"learning_rate": 0.01, "momentum": 0.0, "nesterov": False},
    "Adam": {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7, "amsgrad": False},
    "AdamW": {
        "learning_rate": 0.001,
        "beta_1": 0.9,
        "beta_2": 0.999,
        "epsilon": 1e-7,
        "amsgrad": False,
        "weight_decay": 0.004,
    },
    "Nadam": {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
    "RMSprop": {"learning_rate": 0.001, "rho": 0.9, "momentum": 0.0, "epsilon": 1e-7, "centered": False},
    "Adagrad": {"learning_rate": 0.001, "initial_accumulator_value": 0.1, "epsilon": 1e-7},
    "Adadelta": {"learning_rate": 0.001, "rho": 0.95, "epsilon": 1e-7},
    "Adamax": {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
    "Ftrl": {
        "learning_rate": 0.001,
        "learning_rate_power": -0.5,
        "initial_accumulator_value": 0.1,
        "l1_regularization_strength": 0.0,
        "l2_regularization_strength": 0.0,
        "l2_shrinkage_regularization_strength": 0.0,
        "beta": 0.0,
    },
    "Lamb": {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
    "Lion": {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.99},
    "Adafactor": {
        "learning_rate": 0.001,
        "beta_2_decay": -0.8,
        "epsilon_1": 1e-30,
        "epsilon_2": 1e-3,
        "clip_threshold": 1.0,
        "relative_step": True,
    },
    "ScheduleFreeAdamW": {
        "learning_rate": 0.0025,
        "beta_1": 0.9,
        "beta_2": 0.999,
        "epsilon": 1e-8,
        "warmup_steps": 0,
    },
    "Muon": {
        "learning_rate": 0.001,
        "adam_beta_1": 0.9,
        "adam_beta_2": 0.999,
        "adam_weight_decay": 0.004,
        "epsilon": 1e-7,
        "weight_decay": 0.004,
        "muon_a": 3.4445,
        "muon_b": -4.7750,
        "muon_c": 2.0315,
        "adam_lr_ratio": 1,
        "momentum": 0.95,
        "ns_steps": 5,
        "nesterov": True,
        "rms_rate": 0.2,
    },
}
_OPTIMIZER_NAMES = {name.lower(): name for name in OPTIMIZER_DEFAULTS}
# What Keras's Optimizer base class does around every optimizer's update (KerasOptimizer in
# keras_compat.py does the same), with the values at which a setting changes nothing.
SHARED_SETTINGS: dict[str, tuple] = {
    "weight_decay": (None, 0, 0.0),
    "clipnorm": (None,),
    "clipvalue": (None,),
    "global_clipnorm": (None,),
    "use_ema": (False,),
    "ema_momentum": (),
    "ema_overwrite_frequency": (None,),
    "gradient_accumulation_steps": (None, 1),
    "loss_scale_factor": (None,),
}
# Keys that say nothing about the update.
_IGNORED = {"name", "jit_compile", "is_legacy_optimizer"}
# A legacy (tf_keras) optimizer's keys that change nothing at these values; other values are TODOs.
_LEGACY_NEUTRAL = {"decay": (None, 0, 0.0)}
# Muon's choice of the weights it steps with AdamW: recorded per variable by the TF side
# (setup["variables"][path]["adam"]), so these need no mapping of their own.
_CHOSEN_ON_TF_SIDE = {"exclude_layers", "exclude_embeddings"}
# Keras optimizer key -> the key the torch optimizer's `defaults` has it under.
TORCH_NAMES = {"learning_rate": "lr"}

_LOSS_NAMES = {
    "mse": "mse",
    "mean_squared_error": "mse",
    "meansquarederror": "mse",
    "mae": "mae",
    "mean_absolute_error": "mae",
    "meanabsoluteerror": "mae",
    "huber": "huber",
    "huber_loss": "huber",
    "categorical_crossentropy": "categorical_crossentropy",
    "categoricalcrossentropy": "categorical_crossentropy",
    "sparse_categorical_crossentropy": "sparse_categorical_crossentropy",
    "sparsecategoricalcrossentropy": "sparse_categorical_crossentropy",
    "binary_crossentropy": "binary_crossentropy",
    "binarycrossentropy": "binary_crossentropy",
}
# Keras losses train.py computes with Keras's own formula (keras_compat.py's function of the same
# name, reduced by keras_loss): by name (lower case, no underscores) -> (function, targets, the
# config keys it takes with Keras's defaults).
KERAS_FORMULAS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "hinge": ("hinge", "binary", {}),
    "squaredhinge": ("squared_hinge", "binary", {}),
    "categoricalhinge": ("categorical_hinge", "one_hot", {}),
    "kldivergence": ("kl_divergence", "distribution", {}),
    "poisson": ("poisson", "positive", {}),
    "logcosh": ("log_cosh", "real", {}),
    "meanabsolutepercentageerror": ("mean_absolute_percentage_error", "real", {}),
    "meansquaredlogarithmicerror": ("mean_squared_logarithmic_error", "positive", {}),
    "cosinesimilarity": ("cosine_similarity", "real", {"axis": -1}),
    "dice": ("dice", "binary", {"axis": None}),
    "tversky": ("tversky", "binary", {"alpha": 0.5, "beta": 0.5, "axis": None}),
    "binaryfocalcrossentropy": (
        "binary_focal_crossentropy",
        "binary",
        {
            "apply_class_balancing": False,
            "alpha": 0.25,
            "gamma": 2.0,
            "from_logits": False,
            "label_smoothing": 0.0,
        },
    ),
    "categoricalfocalcrossentropy": (
        "categorical_focal_crossentropy",
        "one_hot",
        {"alpha": 0.25, "gamma": 2.0, "from_logits": False, "label_smoothing": 0.0},
    ),
    "categoricalgeneralizedcrossentropy": (
        "categorical_generalized_cross_entropy",
        "class_index",
        {"q": 0.5},
    ),
}
_FORMULA_ALIASES = {
    "kld": "kldivergence",
    "kullbackleiblerdivergence": "kldivergence",
    "mape": "meanabsolutepercentageerror",
    "msle": "meansquaredlogarithmicerror",
}
# What the targets of each loss look like (the training check draws them accordingly).
TARGETS = {
    "mse": "real",
    "mae": "real",
    "huber": "real",
    "categorical_crossentropy": "one_hot",
    "sparse_categorical_crossentropy": "class_index",
    "binary_crossentropy": "binary",
}
_METRICS = {
    "accuracy": None,  # resolved from the loss, as Keras does
    "acc": None,
    "categorical_accuracy": "categorical_accuracy",
    "sparse_categorical_accuracy": "sparse_categorical_accuracy",
    "binary_accuracy": "binary_accuracy",
    "mae": "mean_absolute_error",
    "mean_absolute_error": "mean_absolute_error",
    "mse": "mean_squared_error",
    "mean_squared_error": "mean_squared_error",
}
_ACCURACY_FOR = {
    "categorical_crossentropy": "categorical_accuracy",
    "sparse_categorical_crossentropy": "sparse_categorical_accuracy",
    "binary_crossentropy": "binary_accuracy",
}
# Tests only: TF2TORCH_TRAINING_FAULT=adam_epsilon maps Adam's epsilon to torch's default, =mse_sum
# sums MSE instead of averaging it: the mistakes the training check must catch and name.
FAULT_ENV = "TF2TORCH_TRAINING_FAULT"


def map_setup(keras: dict[str, Any], outputs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """`outputs`: the model's outputs in model.py's order, each {"name": Keras output name, "rank"}
    (default: one output of rank 2). Each gets the loss Keras gives it (one loss for all, a list by
    position or a dict by name) and its loss weight; an output without a loss has none."""
    todos: list[str] = []
    outputs = outputs or [{"name": "output", "rank": 2}]
    optimizer = _optimizer(keras["optimizer"], todos)
    losses = _losses(keras["loss"], keras.get("loss_weights"), outputs, todos)
    metrics = _metrics(keras.get("metrics") or [], losses[0]["kind"] if losses else "", todos)
    if len(outputs) > 1 and metrics:
        todos.append(f"metrics {[m['keras'] for m in metrics]} of a model with several outputs: not mapped")
        metrics = []
    return {
        "keras": keras,
        "outputs": outputs,
        "optimizer": optimizer,
        "losses": losses,
        "metrics": metrics,
        "todos": todos,
    }


def _losses(
    entry: Any, weights: Any, outputs: list[dict[str, Any]], todos: list[str]
) -> list[dict[str, Any]]:
    names = [o["name"] for o in outputs]
    if isinstance(entry, dict) and "class_name" not in entry:
        unknown = sorted(set(entry) - set(names))
        if unknown:
            todos.append(f"losses for {unknown}: the model has no such output (it has {names})")
        given = [entry.get(name) for name in names]
    elif isinstance(entry, list | tuple):
        given = list(entry) + [None] * (len(names) - len(entry))
    else:
        given = [entry] * len(names)  # Keras applies one loss to every output
    if isinstance(weights, dict):
        weight_of = [weights.get(name, 1.0) for name in names]
    elif isinstance(weights, list | tuple):
        weight_of = list(weights) + [1.0] * (len(names) - len(weights))
    else:
        weight_of = [1.0] * len(names)
    losses = []
    for index, (output, loss, weight) in enumerate(zip(outputs, given, weight_of, strict=True)):
        if loss is None:
            continue
        mapped = _loss(loss, todos, output["rank"])
        losses.append({"output": output["name"], "index": index, "weight": float(weight), **mapped})
    if not losses:
        todos.append(f"loss {entry!r}: names none of the outputs {names}; train.py uses MSE on the first")
        losses.append(
            {"output": names[0], "index": 0, "weight": 1.0, **_loss("mse", todos, outputs[0]["rank"])}
        )
    return losses


def _optimizer(entry: dict[str, Any], todos: list[str]) -> dict[str, Any]:
    entry, wrapper = _unwrapped(entry)
    name = _OPTIMIZER_NAMES.get(entry["class_name"].lower())
    if name is None:
        shown = ", ".join(f"{k}={v!r}" for k, v in shown_keras_settings(entry).items())
        todos.append(
            f"optimizer {entry['class_name']}({shown}): no mapping; train.py uses torch.optim.SGD(lr=0.01) "
            "until you replace it"
        )
        return {"class": "torch.optim.SGD", "kwargs": {"lr": 0.01}, "helpers": [], "settings": []}
    given = {k: _plain(v) for k, v in entry["config"].items() if v is not None}
    own = OPTIMIZER_DEFAULTS[name]
    config = {**own, **given}
    learning_rate = config["learning_rate"]
    schedule = None
    if isinstance(learning_rate, dict):  # a LearningRateSchedule
        schedule = _schedule(learning_rate, todos)
        config["learning_rate"] = learning_rate = schedule["initial"]
    for key, value in entry["config"].items():
        if value in _LEGACY_NEUTRAL.get(key, ()):
            continue
        if key not in own and key not in SHARED_SETTINGS and key not in _IGNORED | _CHOSEN_ON_TF_SIDE:
            todos.append(f"optimizer {name} {key}={value!r}: not mapped")
    # Every torch optimizer, ours included, calls the learning rate `lr` (LR schedulers expect it).
    kwargs = {TORCH_NAMES.get(k, k): config[k] for k in own}
    kwargs["lr"] = float(learning_rate)
    shared = {
        k: config[k]
        for k in SHARED_SETTINGS
        if k in config and config[k] not in SHARED_SETTINGS[k] and k not in own
    }
    if not shared.get("use_ema"):
        shared.pop("ema_momentum", None)
    if name == "SGD" and kwargs.get("nesterov") and not kwargs.get("momentum"):
        kwargs["nesterov"] = False  # Keras's Nesterov step without momentum is plain SGD; torch refuses it
    if name == "SGD" and not shared and not wrapper:
        torch_class, helpers = "torch.optim.SGD", []
    else:
        torch_class = "KerasAdam" if name == "AdamW" else f"Keras{name}"
        helpers = ["KerasOptimizer", torch_class]
        kwargs.update(shared)
        if wrapper:
            kwargs["skip_non_finite"] = True
        if schedule is not None and name == "Adafactor":
            kwargs["schedule"] = True  # Keras's relative step applies to a constant learning rate only
        if name == "Adam" and os.environ.get(FAULT_ENV) == "adam_epsilon":
            kwargs["epsilon"] = 1e-8
    settings = [
        {
            "keras": key,
            "keras_value": config.get(key),
            "torch": TORCH_NAMES.get(key, key),
            "torch_value": kwargs.get(TORCH_NAMES.get(key, key)),
        }
        for key in [*own, *(k for k in shared if k not in own)]
    ]
    if wrapper:
        settings.append(wrapper)
    return {
        "keras_class": name,
        "class": torch_class,
        "kwargs": kwargs,
        "helpers": helpers,
        "settings": settings,
        "schedule": schedule,
    }


def _unwrapped(entry: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A LossScaleOptimizer's inner optimizer, and the setting row that says what became of the
    wrapper: its dynamic loss scale divides out again (float32 and float64 need none); what
    train.py keeps is Keras's skipping of a step whose gradients are not finite."""
    if entry.get("class_name") != "LossScaleOptimizer":
        return entry, None
    config = entry.get("config") or {}
    inner = config.get("inner_optimizer") or {}
    if isinstance(inner, str):
        inner = {"class_name": inner, "config": {}}
    row = {
        "keras": "LossScaleOptimizer",
        "keras_value": {k: config.get(k) for k in ("initial_scale", "dynamic_growth_steps")},
        "torch": "skip_non_finite",
        "torch_value": True,
    }
    return {"class_name": inner.get("class_name", "SGD"), "config": dict(inner.get("config") or {})}, row


# Keras LearningRateSchedule -> the code of `learning_rate(step)` in train.py (step: the optimizer's
# update count, 0 at the first update, as Keras's `iterations`), with the config's keys as names.
_SCHEDULES = {
    "ExponentialDecay": (
        ("initial_learning_rate", "decay_steps", "decay_rate", "staircase"),
        "exponent = step // decay_steps if staircase else step / decay_steps\n"
        "return initial_learning_rate * decay_rate**exponent",
    ),
    "CosineDecay": (
        ("initial_learning_rate", "decay_steps", "alpha", "warmup_target", "warmup_steps"),
        "if warmup_target is not None and step < warmup_steps:  # linear warmup to warmup_target\n"
        "    return (warmup_target - initial_learning_rate) * step / warmup_steps + initial_learning_rate\n"
        "start = initial_learning_rate if warmup_target is None else warmup_target\n"
        "step = step if warmup_target is None else step - warmup_steps\n"
        "progress = min(step, decay_steps) / decay_steps\n"
        "cosine = 0.5 * (1 + math.cos(math.pi * progress))\n"
        "return start * ((1 - alpha) * cosine + alpha)",
    ),
    "CosineDecayRestarts": (
        ("initial_learning_rate", "first_decay_steps", "t_mul", "m_mul", "alpha"),
        "fraction = step / first_decay_steps\n"
        "if t_mul == 1.0:\n"
        "    restart = math.floor(fraction)\n"
        "    fraction -= restart\n"
        "else:  # each period t_mul times longer than the last\n"
        "    restart = math.floor(math.log(1.0 - fraction * (1.0 - t_mul)) / math.log(t_mul))\n"
        "    fraction = (fraction - (1.0 - t_mul**restart) / (1.0 - t_mul)) / t_mul**restart\n"
        "cosine = 0.5 * m_mul**restart * (1.0 + math.cos(math.pi * fraction))\n"
        "return initial_learning_rate * ((1 - alpha) * cosine + alpha)",
    ),
    "InverseTimeDecay": (
        ("initial_learning_rate", "decay_steps", "decay_rate", "staircase"),
        "progress = step / decay_steps\n"
        "progress = math.floor(progress) if staircase else progress\n"
        "return initial_learning_rate / (1 + decay_rate * progress)",
    ),
    "PolynomialDecay": (
        ("initial_learning_rate", "decay_steps", "end_learning_rate", "power", "cycle"),
        "if cycle:  # decay_steps grows to the next multiple past step\n"
        "    decay_steps = decay_steps * (1.0 if step == 0 else math.ceil(step / decay_steps))\n"
        "else:\n"
        "    step = min(step, decay_steps)\n"
        "progress = step / decay_steps\n"
        "return (initial_learning_rate - end_learning_rate) * (1 - progress) ** power + end_learning_rate",
    ),
    "PiecewiseConstantDecay": (
        ("boundaries", "values"),
        "return values[sum(step > boundary for boundary in boundaries)]",
    ),
}


def _schedule(entry: dict[str, Any], todos: list[str]) -> dict[str, Any]:
    """The schedule's formula for train.py's LambdaLR, or a TODO and its first learning rate."""
    class_name, config = entry.get("class_name"), dict(entry.get("config") or {})
    initial = config.get("initial_learning_rate", (config.get("values") or [0.001])[0])
    known = _SCHEDULES.get(class_name)
    if known is None or not initial:
        todos.append(
            f"learning_rate schedule {class_name} {config}: not mapped; train.py starts from its initial "
            f"learning rate {initial} and keeps it"
        )
        return {"initial": initial, "code": None}
    keys, body = known
    defaults = {
        "alpha": 0.0,
        "staircase": False,
        "warmup_target": None,
        "warmup_steps": 0,
        "t_mul": 2.0,
        "m_mul": 1.0,
        "end_learning_rate": 0.0001,
        "power": 1.0,
        "cycle": False,
    }
    values = {key: _plain_all(config.get(key, defaults.get(key))) for key in keys}
    return {"initial": float(initial), "class_name": class_name, "arguments": values, "code": body}


def _loss(entry: Any, todos: list[str], rank: int) -> dict[str, Any]:
    if isinstance(entry, str):
        class_name, config = entry, {}
    elif isinstance(entry, dict) and "class_name" in entry:
        class_name, config = entry["class_name"], dict(entry.get("config") or {})
    else:
        todos.append(
            f"loss {entry!r}: not a loss name or a Keras loss config; train.py uses MSE until you replace it"
        )
        return {"kind": "mse", "code": "nn.MSELoss()", "helpers": [], "target": "real", "keras": entry}
    formula = KERAS_FORMULAS.get(_FORMULA_ALIASES.get(_compact(class_name), _compact(class_name)))
    if formula is not None:
        return _formula_loss(class_name, config, formula, todos)
    kind = _LOSS_NAMES.get(class_name.lower())
    if kind is None:
        todos.append(f"loss {class_name} {config}: no mapping; train.py uses MSE until you replace it")
        return {"kind": "mse", "code": "nn.MSELoss()", "helpers": [], "target": "real", "keras": entry}
    reduction = config.get("reduction", "sum_over_batch_size")
    torch_reduction = {"sum_over_batch_size": "mean", "sum": "sum", "auto": "mean", None: "mean"}.get(
        reduction
    )
    if torch_reduction is None:
        todos.append(f"loss reduction {reduction!r}: not mapped; train.py averages over the batch")
        torch_reduction = "mean"
    if kind == "mse" and os.environ.get(FAULT_ENV) == "mse_sum":
        torch_reduction = "sum"  # tests only: a loss that scales every gradient
    from_logits = bool(config.get("from_logits", False))
    smoothing = float(config.get("label_smoothing", 0.0) or 0.0)
    reduction_arg = "" if torch_reduction == "mean" else f"reduction={torch_reduction!r}"
    helpers: list[str] = []
    if smoothing and kind == "sparse_categorical_crossentropy":
        todos.append(f"loss {class_name} label_smoothing={smoothing}: not mapped")
    if kind == "mse":
        code = f"nn.MSELoss({reduction_arg})"
    elif kind == "mae":
        code = f"nn.L1Loss({reduction_arg})"
    elif kind == "huber":
        delta = float(config.get("delta", 1.0))
        code = f"nn.HuberLoss({_args(reduction_arg, f'delta={delta!r}')})"
    elif kind in ("categorical_crossentropy", "sparse_categorical_crossentropy") and from_logits:
        smoothing_arg = (
            f"label_smoothing={smoothing!r}" if smoothing and kind == "categorical_crossentropy" else ""
        )
        code = f"nn.CrossEntropyLoss({_args(reduction_arg, smoothing_arg)})"
        if rank > 2:  # (batch, steps, classes): torch wants the classes on axis 1
            code, helpers = f"classes_last({code})", ["classes_last"]
    else:
        # Probabilities in (or binary logits): Keras's formula, pasted into train.py.
        helpers = [kind]
        args = [f"from_logits={from_logits}"] if kind == "binary_crossentropy" else []
        if smoothing:
            args.append(f"label_smoothing={smoothing!r}")
        if torch_reduction != "mean":
            args.append(f"reduction={torch_reduction!r}")
        code = f"functools.partial({kind}, {', '.join(args)})" if args else kind
    handled = ("name", "reduction", "from_logits", "label_smoothing", "axis", "delta", "dtype")
    for key in config:
        if key not in handled and config[key] not in (None, False):
            todos.append(f"loss {class_name} {key}={config[key]!r}: not mapped")
    if config.get("axis", -1) != -1:
        todos.append(f"loss {class_name} axis={config['axis']}: train.py reduces over the last axis")
    return {
        "kind": kind,
        "code": code,
        "helpers": helpers,
        "target": TARGETS[kind],
        "keras": {"class_name": class_name, "config": config},
        "from_logits": from_logits,
        "label_smoothing": smoothing,
    }


def _compact(name: str) -> str:
    return name.lower().replace("_", "")


def _formula_loss(
    class_name: str, config: dict[str, Any], formula: tuple[str, str, dict[str, Any]], todos: list[str]
) -> dict[str, Any]:
    """A loss train.py computes with Keras's formula: its config keys as the function's arguments."""
    function, target, keys = formula
    reduction = config.get("reduction", "sum_over_batch_size")
    if reduction not in ("sum_over_batch_size", "sum", "auto", None):
        todos.append(
            f"loss {class_name} reduction={reduction!r}: not mapped; train.py averages over the batch"
        )
    options = {k: _plain_all(config.get(k, default)) for k, default in keys.items()}
    options = {k: v for k, v in options.items() if v != keys[k]}  # Keras's defaults are the function's
    for key, value in config.items():
        if key == "axis" and value == -1 and "axis" not in keys:
            continue  # the functions reduce over the last axis, as Keras's do by default
        if key not in keys and key not in ("name", "reduction", "dtype") and value not in (None, False):
            todos.append(f"loss {class_name} {key}={value!r}: not mapped")
    arguments = [
        function,
        *(["reduction='sum'"] if reduction == "sum" else []),
        *(f"{k}={v!r}" for k, v in options.items()),
    ]
    return {
        "kind": function,
        "code": f"keras_loss({', '.join(arguments)})",
        "helpers": ["keras_loss", function],
        "target": target,
        "keras": {"class_name": class_name, "config": config},
        "from_logits": bool(config.get("from_logits", False)),
        "label_smoothing": float(config.get("label_smoothing", 0.0) or 0.0),
    }


def _plain_all(value: Any) -> Any:
    return [_plain(v) for v in value] if isinstance(value, list | tuple) else _plain(value)


def _plain(value: Any) -> Any:
    """Keras stores hyper-parameters as float32: 0.05 comes back as 0.05000000074505806."""
    return float(f"{value:.7g}") if isinstance(value, float) else value


def shown_keras_settings(entry: dict[str, Any]) -> dict[str, Any]:
    """The optimizer settings worth showing: its own keys and any other that is not at a neutral value."""
    own = OPTIMIZER_DEFAULTS.get(_OPTIMIZER_NAMES.get(entry["class_name"].lower(), ""), {})
    shown = {}
    for key, value in (entry.get("config") or {}).items():
        if key in _IGNORED or value in _LEGACY_NEUTRAL.get(key, ()):
            continue
        if key in SHARED_SETTINGS and key not in own and value in SHARED_SETTINGS[key]:
            continue
        if key == "ema_momentum" and not entry["config"].get("use_ema"):
            continue
        shown[key] = value if isinstance(value, dict) else _plain(value)
    return shown


def _args(*parts: str) -> str:
    return ", ".join(p for p in parts if p)


def _metrics(metrics: list[Any], loss_kind: str, todos: list[str]) -> list[dict[str, str]]:
    mapped = []
    for metric in metrics:
        name = metric if isinstance(metric, str) else str(metric)
        key = name.lower()
        if key not in _METRICS:
            todos.append(f"metric {name!r}: not mapped")
            continue
        function = _METRICS[key] or _ACCURACY_FOR.get(loss_kind)
        if function is None:
            todos.append(f"metric {name!r} with loss {loss_kind}: Keras picks no accuracy for it; not mapped")
            continue
        mapped.append({"keras": name, "torch": function})
    return mapped


def torch_optimizer_differences(setup: dict[str, Any], torch_defaults: dict[str, Any]) -> list[str]:
    """The Keras optimizer settings the constructed torch optimizer does not have: named when a
    training check fails, because a wrong hyper-parameter is the usual reason."""
    differences = []
    for row in setup["optimizer"]["settings"]:
        keras_value = row["keras_value"]
        if isinstance(keras_value, dict) or keras_value is None:
            continue
        actual = torch_defaults.get(row["torch"])
        if actual is None or not _same(keras_value, actual):
            differences.append(
                f"{row['keras']}: Keras {keras_value!r}, torch optimizer {row['torch']}={actual!r}"
            )
    return differences


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return bool(a) == bool(b)
    return abs(float(a) - float(b)) <= 1e-6 * max(abs(float(a)), abs(float(b)), 1e-30)
