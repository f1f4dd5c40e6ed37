"""train.py: a short PyTorch training loop for model.py, with the Keras model's optimizer, loss and
metrics as mapping.py translated them. Written beside model.py; it imports torch, numpy and model.py
only. The training check (torch_worker/training/stage.py) imports this same file and runs its
`make_optimizer`, `loss_fn` and `train_step`, so what is checked is what the user gets."""

from __future__ import annotations

import ast
import inspect
import json
import math
import textwrap
from typing import Any

import numpy as np

from pipeline import __version__
from pipeline.common import training_mapping as mapping
from pipeline.common import weight_layout
from pipeline.torch_worker.training import keras_compat


def todos(setup: dict[str, Any], dropout: list[str], restored: list[str]) -> list[str]:
    """What train.py cannot carry over: the unmapped compile settings, and what model.py lacks for
    training as Keras does. `dropout`: the Keras dropouts the check disabled ("name (Class)");
    `restored`: the Dropout layers model.py has as nn.Dropout."""
    found = list(setup["todos"])
    cells = [d for d in dropout if "Cell)" in d]
    missing = [d for d in dropout if d not in cells and d.split(" ")[0] not in restored]
    if missing:
        found.append(
            f"Keras dropout {', '.join(missing)}: not in model.py (the inference graph has no trace of it "
            "and it could not be placed by value); add nn.Dropout where Keras has it if training needs it"
        )
    if cells:
        found.append(
            f"Keras RNN dropout {', '.join(cells)}: torch's LSTM/GRU have no dropout on a layer's inputs "
            "and recurrent state; model.py trains without it"
        )
    return found


def penalties(
    regularizers: list[dict[str, Any]],
    rows: list[dict[str, Any]],
    activity_modules: dict[str, str] | None = None,
) -> tuple[list[dict], list[str]]:
    """Each Keras weight regularizer (stage tf_training lists them by variable) on the torch parameters
    weights_map.json says hold its variable, and a TODO for each that cannot be. L1 and L2 sum over the
    elements, so the parameters may hold them in any layout, as long as together they hold each element
    once (a GRU's stacked bias is two parameters); the orthogonal penalty needs the Keras kernel back
    (a parameter as it is, or transposed). An activity regularizer goes on the output of the module
    that returns its layer's output (`activity_modules`: the native stage's nn.Identity, by layer)."""
    found, todos = [], []
    for regularizer in regularizers:
        if regularizer.get("activity"):
            module = (activity_modules or {}).get(regularizer["layer"])
            if module is None:
                todos.append(
                    f"{regularizer['layer']} activity_regularizer {regularizer['class_name']}"
                    f"({regularizer['config']}): no node of model.py computes the layer's output; not in train.py"
                )
                continue
            found.append(
                {
                    **regularizer,
                    "variable": f"{regularizer['layer']} output",
                    "parameter": f"{module} output",
                    "module": module,
                }
            )
            continue
        held = [r for r in rows if r["tf"] == regularizer["variable"]]
        if regularizer["class_name"] == "OrthogonalRegularizer":
            fits = (
                len(held) == 1
                and held[0]["transform"] in ("none", "transpose")
                and len(held[0]["shape"]) == 2
            )
        else:
            zeros = np.zeros(regularizer["shape"])
            fits = bool(held) and sum(math.prod(r["shape"]) for r in held) == zeros.size
            fits = fits and all(
                weight_layout.to_torch(r["transform"], zeros, tuple(r["shape"])) is not None for r in held
            )
        if not fits:
            todos.append(
                f"{regularizer['variable']} regularizer {regularizer['class_name']}({regularizer['config']}): no "
                "torch parameter holds the variable as the penalty needs (weights_map.json); not in train.py"
            )
            continue
        found += [{**regularizer, "parameter": r["torch"], "layout": r["transform"]} for r in held]
    return found, todos


def train_py(
    setup: dict[str, Any],
    class_name: str,
    input_names: list[str],
    todos: list[str],
    batchnorm: bool,
    penalized: list[dict[str, Any]] = (),
    parameter_options: dict[str, dict[str, Any]] | None = None,
) -> str:
    optimizer, losses = setup["optimizer"], setup["losses"]
    schedule = optimizer.get("schedule") or {}
    preparations = _preparations(optimizer, batchnorm, any(p.get("activity") for p in penalized))
    multi = _several_outputs(setup)
    loss_helpers = [h for loss in losses for h in loss["helpers"]]
    helpers = [*optimizer["helpers"], *loss_helpers, *(m["torch"] for m in setup["metrics"])]
    helpers += (
        ["orthogonal_penalty"] if any(p["class_name"] == "OrthogonalRegularizer" for p in penalized) else []
    )
    helpers += ["keras_batchnorm_statistics"] if batchnorm else []
    lines = [
        f'"""Training loop for {class_name} (model.py), carried over from the Keras model\'s compile() by',
        f"tf2torch {__version__}. Edit freely.",
        "",
        f"Keras: optimizer {_keras_call(setup['keras']['optimizer'])}",
        f"       loss {_keras_loss(setup['keras']['loss'])}",
        *(
            [f"       loss_weights {setup['keras']['loss_weights']}"]
            if setup["keras"].get("loss_weights")
            else []
        ),
        f"       metrics {setup['keras'].get('metrics') or []}",
        "",
        "Run: python train.py DATA.npz [--epochs N] [--batch-size N]",
        f"DATA.npz holds the inputs by name ({', '.join(input_names)}) and the targets as "
        + (
            ", ".join(f"`targets_{loss['output']}` ({_target_doc(loss['target'])})" for loss in losses)
            if multi
            else f"`targets` ({_target_doc(losses[0]['target'])})"
        )
        + ".",
        '"""',
        "",
        "import argparse",
        *(["import functools"] if any("functools.partial" in loss["code"] for loss in losses) else []),
        *(
            ["import math"]
            if _uses_math(_with_dependencies(helpers)) or "math." in (schedule.get("code") or "")
            else []
        ),
        "",
        "import numpy as np",
        "import torch",
        "from safetensors.torch import load_file, save_file",
        "from torch import nn",
        "",
        f"from model import {class_name}",
        "",
        "BATCH_SIZE = 32  # Keras fit()'s default",
        "EPOCHS = 1",
        f"INPUTS = {json.dumps(input_names)}",
    ]
    if multi:
        lines.append(
            f"TARGETS = {json.dumps([loss['output'] for loss in losses])}  # the outputs with a loss"
        )
    if todos:
        lines += ["", "# TODO: Keras settings tf2torch did not map (the conversion report lists them too):"]
        for todo in todos:
            wrapped = textwrap.wrap(todo, 100)
            lines += [f"# TODO: {wrapped[0]}", *(f"#       {more}" for more in wrapped[1:])]
    for helper in _with_dependencies(helpers):
        lines += ["", "", inspect.getsource(getattr(keras_compat, helper)).rstrip()]
    lines += [
        "",
        "",
        *preparations,
        *_optimizer_lines(optimizer, parameter_options),
        *_schedule_lines(schedule),
        *_loss_lines(losses, multi),
        "",
        "",
        *_penalty_lines(penalized),
        "METRICS = {" + ", ".join(f"{json.dumps(m['keras'])}: {m['torch']}" for m in setup["metrics"]) + "}",
        "",
        "",
        "def train_step(model, optimizer, inputs, targets, scheduler=None):",
        "    model.train()  # BatchNorm uses and updates its batch statistics, as Keras does in fit()",
        "    optimizer.zero_grad()",
        "    outputs = model(*inputs)",
        "    loss = total_loss(model, outputs, targets)",
        *(
            ["    optimizer.scale_loss(loss).backward()  # Keras's loss_scale_factor (1 when unset)"]
            if "KerasOptimizer" in optimizer["helpers"]
            else ["    loss.backward()"]
        ),
        "    optimizer.step()  # Keras's clipping, weight decay and update",
        "    if scheduler is not None:",
        "        scheduler.step()  # Keras's schedules count updates, not epochs",
        "    return loss.detach(), _detached(outputs)",
        "",
        "",
        "def _detached(outputs):",
        "    return [o.detach() for o in outputs] if isinstance(outputs, (list, tuple)) else outputs.detach()",
        "",
        "",
        "@torch.no_grad()",
        "def evaluate(model, loader):",
        "    model.eval()  # BatchNorm uses its running statistics",
        "    return run_epoch(loader, lambda inputs, targets: _eval_step(model, inputs, targets))",
        "",
        "",
        "def _eval_step(model, inputs, targets):",
        "    outputs = model(*inputs)",
        "    return total_loss(model, outputs, targets), outputs",
        "",
        "",
        "def run_epoch(loader, step):",
        '    """Mean loss and metrics over the loader, one `step(inputs, targets)` per batch."""',
        "    total, seen, scores = 0.0, 0, {name: 0.0 for name in METRICS}",
        "    for batch in loader:",
        "        inputs, targets = batch[: len(INPUTS)], "
        + ("dict(zip(TARGETS, batch[len(INPUTS) :]))" if multi else "batch[len(INPUTS)]"),
        "        loss, outputs = step(inputs, targets)",
        "        size = len(inputs[0])",
        "        total += float(loss) * size",
        "        seen += size",
        "        for name, metric in METRICS.items():",
        "            scores[name] += float(metric(outputs, targets)) * size",
        '    return {"loss": total / seen} | {name: score / seen for name, score in scores.items()}',
        "",
        "",
        "def load_data(path, batch_size, shuffle):",
        "    with np.load(path) as data:",
        "        tensors = [torch.from_numpy(data[name]) for name in INPUTS]",
        *(
            [
                "        tensors += [torch.from_numpy(data[f'targets_{name}']) for name in TARGETS]",
                "        # class indices as torch's cross-entropy takes them",
                "        tensors = [t.long() if t.dtype in (torch.int32, torch.uint8) and i >= len(INPUTS) else t"
                " for i, t in enumerate(tensors)]",
            ]
            if multi
            else [
                '        tensors.append(torch.from_numpy(data["targets"])'
                + (".long())" if losses[0]["target"] == "class_index" else ")")
            ]
        ),
        "    dataset = torch.utils.data.TensorDataset(*tensors)",
        "    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=shuffle)",
        "",
        "",
        "def main():",
        '    parser = argparse.ArgumentParser(description="Train model.py on DATA.npz.")',
        '    parser.add_argument("data")',
        '    parser.add_argument("--validation", help="DATA.npz evaluated after each epoch")',
        '    parser.add_argument("--epochs", type=int, default=EPOCHS)',
        '    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)',
        '    parser.add_argument("--weights", default="model.safetensors")',
        '    parser.add_argument("--save", default="trained.safetensors")',
        "    args = parser.parse_args()",
        "    loader = load_data(args.data, args.batch_size, shuffle=True)  # fit() shuffles too",
        "    validation = load_data(args.validation, args.batch_size, shuffle=False) if args.validation else None",
        f"    model = {class_name}()",
        "    model.load_state_dict(load_file(args.weights), strict=True)",
        *(["    prepare_model(model)"] if preparations else []),
        "    optimizer = make_optimizer(model)",
        f"    scheduler = {'make_scheduler(optimizer)' if schedule.get('code') else 'None'}",
        "    for epoch in range(args.epochs):",
        "        figures = run_epoch(",
        "            loader, lambda inputs, targets: train_step(model, optimizer, inputs, targets, scheduler)",
        "        )",
        "        if validation is not None:",
        '            figures |= {f"val_{k}": v for k, v in evaluate(model, validation).items()}',
        '        print(f"epoch {epoch + 1}: " + ", ".join(f"{k} {v:.4f}" for k, v in figures.items()))',
        *(
            ["    optimizer.finalize()  # as fit() ends: with use_ema the weights become their averages"]
            if optimizer["kwargs"].get("use_ema")
            else []
        ),
        "    save_file(model.state_dict(), args.save)",
        "",
        "",
        'if __name__ == "__main__":',
        "    main()",
        "",
    ]
    return "\n".join(lines)


def parameter_options(setup: dict[str, Any], rows: list[dict[str, Any]]) -> tuple[dict[str, dict], list[str]]:
    """What the optimizer needs to know of single parameters, by torch name, and a TODO for each it
    cannot be told: the weights Muon steps with AdamW (the TF side asked Keras's Muon which), and
    for Adafactor, whose update of a weight of 2+ dimensions depends on which axes are its last two,
    the Keras layout of each parameter whose layout differs beyond a transposition (the axes that
    take the parameter to Keras's order, then Keras's shape)."""
    name = setup["optimizer"].get("keras_class")
    variables = setup.get("variables") or {}
    options: dict[str, dict] = {}
    todos: list[str] = []
    for row in rows:
        record = variables.get(row["tf"])
        if record is None:
            continue
        if name == "Muon" and record.get("adam"):
            options[row["torch"]] = {"adam": True}
        elif name == "Muon" and row["transform"].startswith("row "):
            todos.append(
                f"{row['tf']}: Muon steps the Keras weight as one matrix; model.py holds it in parts"
            )
        if name != "Adafactor" or len(record["shape"]) < 2:
            continue
        axes = weight_layout.keras_axes(row["transform"], len(row["shape"]))
        if axes is None:
            todos.append(
                f"{row['tf']}: Adafactor factors the Keras weight's last two axes; model.py holds it as "
                f"'{row['transform']}', which train.py cannot take back to Keras's layout"
            )
        elif len(record["shape"]) > 2 or len(row["shape"]) > 2:
            options[row["torch"]] = {"keras_layout": (list(axes), list(record["shape"]))}
    return options, todos


def _optimizer_lines(optimizer: dict[str, Any], options: dict[str, dict[str, Any]] | None) -> list[str]:
    call = f"{optimizer['class']}(params, {_kwargs(optimizer['kwargs'])})"
    if not options:
        return [
            "def make_optimizer(model):",
            "    # Keras updates its trainable variables only: frozen parameters stay out.",
            "    params = [p for p in model.parameters() if p.requires_grad]",
            f"    return {call}",
            "",
            "",
        ]
    return [
        "# What the optimizer needs to know of single parameters: the weights Muon steps with AdamW,",
        "# or the Keras layout Adafactor factors (the axes that take the parameter to Keras's order,",
        "# then Keras's shape).",
        "PARAMETER_OPTIONS = {",
        *(f"    {name!r}: {value!r}," for name, value in options.items()),
        "}",
        "",
        "",
        "def make_optimizer(model):",
        "    # Keras updates its trainable variables only: frozen parameters stay out.",
        "    groups = {}",
        "    for name, p in model.named_parameters():",
        "        if p.requires_grad:",
        "            options = PARAMETER_OPTIONS.get(name, {})",
        "            groups.setdefault(repr(options), (options, []))[1].append(p)",
        '    params = [{"params": members, **options} for options, members in groups.values()]',
        f"    return {call}",
        "",
        "",
    ]


def _with_dependencies(helpers: list[str]) -> list[str]:
    """The helpers to paste, each after the keras_compat functions and classes its source names (a
    base class, a function it calls), once each."""
    ordered: dict[str, None] = {}
    seen: set[str] = set()

    def add(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        tree = ast.parse(textwrap.dedent(inspect.getsource(getattr(keras_compat, name))))
        names = (node.id for node in ast.walk(tree) if isinstance(node, ast.Name))  # code, not docstrings
        for used in dict.fromkeys(names):
            if used != name and used in _PASTEABLE:
                add(used)
        ordered[name] = None

    for helper in helpers:
        add(helper)
    return list(ordered)


# What keras_compat.py defines itself (its imports, torch and math, are no helpers).
_PASTEABLE = {
    name
    for name, value in vars(keras_compat).items()
    if (inspect.isfunction(value) or inspect.isclass(value)) and value.__module__ == keras_compat.__name__
}


def _uses_math(helpers: list[str]) -> bool:
    return any("math." in inspect.getsource(getattr(keras_compat, h)) for h in helpers)


def _preparations(optimizer: dict[str, Any], batchnorm: bool, activity: bool = False) -> list[str]:
    """`prepare_model(model)`: what model.py needs to train as Keras does, beyond its weights."""
    lines = []
    if activity:
        lines += [
            "    for name, *_ in ACTIVITY_PENALTIES:  # the layer outputs activity regularizers read",
            "        model.get_submodule(name).register_forward_hook(",
            "            lambda module, args, output, name=name: LAYER_OUTPUTS.__setitem__(name, output.clone())",
            "        )",
        ]
    if "KerasOptimizer" in optimizer["helpers"]:
        lines += [
            "    for module in model.modules():  # per-token embedding gradients, as Keras squares them",
            "        if isinstance(module, nn.Embedding):",
            "            module.sparse = True",
        ]
    if batchnorm:
        lines.append("    keras_batchnorm_statistics(model)  # running_var from the biased batch variance")
    if not lines:
        return []
    return ["def prepare_model(model):", *lines, "", ""]


def _schedule_lines(schedule: dict[str, Any]) -> list[str]:
    if not schedule.get("code"):
        return []
    arguments = ", ".join(f"{k}={v!r}" for k, v in schedule["arguments"].items())
    return [
        f"def learning_rate(step, {arguments}):",
        f'    """Keras {schedule["class_name"]} at update `step` (0 at the first update)."""',
        *(f"    {line}" for line in schedule["code"].splitlines()),
        "",
        "",
        "def make_scheduler(optimizer):",
        f"    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: learning_rate(step) / {schedule['initial']!r})",
        "",
        "",
    ]


def _several_outputs(setup: dict[str, Any]) -> bool:
    return len(setup.get("outputs", [])) > 1


def _loss_lines(losses: list[dict[str, Any]], multi: bool) -> list[str]:
    if not multi:
        return [f"loss_fn = {losses[0]['code']}"]
    lines = ["# Keras's loss for each output it gives one, and its loss weight."]
    lines += ["LOSSES = {"]
    lines += [f"    {json.dumps(loss['output'])}: ({loss['code']}, {loss['weight']!r})," for loss in losses]
    lines += [
        "}",
        f"OUTPUT_INDEX = {json.dumps({loss['output']: loss['index'] for loss in losses})}  # in model.py's outputs",
        "",
        "",
        "def loss_fn(outputs, targets):",
        '    """Keras\'s total loss: the weighted sum of the outputs\' losses."""',
        "    return sum(",
        "        weight * loss(outputs[OUTPUT_INDEX[name]], targets[name]) for name, (loss, weight) in LOSSES.items()",
        "    )",
        "",
    ]
    return lines


def _penalty_lines(penalized: list[dict[str, Any]]) -> list[str]:
    """`total_loss`: the compiled loss plus what Keras's weight and activity regularizers add
    (model.losses)."""
    lines = []
    activity = [p for p in penalized if p.get("activity")]
    weights = [p for p in penalized if p["class_name"] != "OrthogonalRegularizer" and not p.get("activity")]
    orthogonal = [p for p in penalized if p["class_name"] == "OrthogonalRegularizer"]
    if weights:
        lines += [
            "# Keras's L1, L2 and L1L2 regularizers: l1 * sum(|w|) + l2 * sum(w ** 2) of the weight they",
            "# regularize (parameter, Keras variable, l1, l2); sums, so any layout of the same values.",
            "WEIGHT_PENALTIES = [",
            *(
                f"    ({p['parameter']!r}, {p['variable']!r}, {p['config'].get('l1', 0.0)!r}, "
                f"{p['config'].get('l2', 0.0)!r}),"
                for p in weights
            ),
            "]",
        ]
    if orthogonal:
        lines += [
            "# Keras's OrthogonalRegularizer on a Dense kernel (parameter, Keras variable, whether the",
            "# parameter is the kernel transposed, factor, mode).",
            "ORTHOGONAL_PENALTIES = [",
            *(
                f"    ({p['parameter']!r}, {p['variable']!r}, {p['layout'] == 'transpose'}, "
                f"{p['config']['factor']!r}, {p['config']['mode']!r}),"
                for p in orthogonal
            ),
            "]",
        ]
    if activity:
        lines += [
            "# Keras's activity regularizers: l1 * sum(|y|) + l2 * sum(y ** 2) of a layer's output y, divided",
            "# by its batch size (model.py module returning the Keras layer's output, Keras layer, l1, l2);",
            "# prepare_model's forward hooks keep each output of the last forward here.",
            "ACTIVITY_PENALTIES = [",
            *(
                f"    ({p['module']!r}, {p['layer']!r}, {p['config'].get('l1', 0.0)!r}, "
                f"{p['config'].get('l2', 0.0)!r}),"
                for p in activity
            ),
            "]",
            "LAYER_OUTPUTS = {}",
        ]
    lines += ["", ""] if lines else []
    lines.append("def total_loss(model, outputs, targets):")
    if not penalized:
        return [
            *lines,
            '    """What Keras\'s fit() minimises: the compiled loss (no regularizers)."""',
            "    return loss_fn(outputs, targets)",
            "",
            "",
        ]
    lines += [
        '    """What Keras\'s fit() minimises: the compiled loss plus the regularizers\' penalties."""',
        "    params = dict(model.named_parameters())",
        "    loss = loss_fn(outputs, targets)",
    ]
    if weights:
        lines += [
            "    for name, _, l1, l2 in WEIGHT_PENALTIES:",
            "        loss = loss + l1 * params[name].abs().sum() + l2 * params[name].square().sum()",
        ]
    if orthogonal:
        lines += [
            "    for name, _, transposed, factor, mode in ORTHOGONAL_PENALTIES:",
            "        kernel = params[name].T if transposed else params[name]  # Keras's (in, out) kernel",
            "        loss = loss + orthogonal_penalty(kernel, factor, mode)",
        ]
    if activity:
        lines += [
            "    for name, _, l1, l2 in ACTIVITY_PENALTIES:",
            "        output = LAYER_OUTPUTS[name]",
            "        loss = loss + (l1 * output.abs().sum() + l2 * output.square().sum()) / output.shape[0]",
        ]
    return [*lines, "    return loss", "", ""]


def _kwargs(kwargs: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


def _keras_call(entry: dict[str, Any]) -> str:
    return f"{entry['class_name']}({_kwargs(mapping.shown_keras_settings(entry))})"


def _keras_loss(entry: Any) -> str:
    if isinstance(entry, dict) and "class_name" not in entry:  # one loss per output name
        return "{" + ", ".join(f"{k!r}: {_keras_loss(v)}" for k, v in entry.items()) + "}"
    if isinstance(entry, list | tuple):
        return "[" + ", ".join(_keras_loss(v) for v in entry) + "]"
    if isinstance(entry, dict):
        config = {k: v for k, v in (entry.get("config") or {}).items() if k not in ("name", "reduction")}
        return f"{entry['class_name']}({_kwargs(config)})"
    return repr(entry)


def _target_doc(target: str) -> str:
    return {
        "real": "same shape as the output",
        "one_hot": "one-hot rows, same shape as the output",
        "class_index": "integer class indices",
        "binary": "0/1 values, same shape as the output",
        "distribution": "rows of class probabilities, same shape as the output",
        "positive": "values >= 0 (counts, rates), same shape as the output",
    }[target]
