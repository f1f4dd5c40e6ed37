"""Stage `training` (torch worker): writes train.py beside model.py and, with `training_check: N`,
runs N steps of that train.py's own `prepare_model`, `make_optimizer`, `make_scheduler` and
`train_step` from model.safetensors on the batches TF trained on.

The runner compares training_tf.npz with training_torch.npz (pair `training`): `loss` (one value per
step), `update:<parameter>` (each parameter's or buffer's change over the N steps, BatchNorm's
statistics included) and `grad:<parameter>` (the first step's gradient, before any update), TF's
brought into torch's layout through weights_map.json (pipeline/common/weight_layout.py). If the comparison
fails, the differing gradient nearest the loss and the Keras optimizer settings that the torch
optimizer does not have are named as the likely causes. A trainable TF variable that no parameter
holds fails the check: model.py would not train it.
"""

from __future__ import annotations

import importlib.util
import sys
from copy import deepcopy
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline import artifacts
from pipeline.common import training_mapping as mapping
from pipeline.common import weight_layout
from pipeline.compare import compare_arrays
from pipeline.config import ModelConfig, resolve_tolerance
from pipeline.errors import ConversionError
from pipeline.torch_worker.native_stage import load_native
from pipeline.torch_worker.training import codegen


def _schedule_row(schedule: dict[str, Any] | None) -> dict[str, Any] | None:
    if not schedule:
        return None
    return {"class_name": schedule["class_name"], "arguments": schedule.get("arguments", {})}


def training(cfg: ModelConfig, fmt: str, out: Path, state: dict[str, Any]) -> dict[str, Any]:
    setup = artifacts.load_json(out / artifacts.TRAINING_SETUP)
    input_names = state["input_names"]
    if "native_module" not in state:
        return {"skipped": "no native model: stage native was skipped, so there is no model.py to train"}
    native = state["native_module"]
    batchnorm = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in native.modules())
    rows = artifacts.load_json(out / artifacts.WEIGHTS_MAP)
    penalized, unpenalized = codegen.penalties(
        setup.get("regularizers", []), rows, state.get("activity_modules", {})
    )
    options, unplaced = codegen.parameter_options(setup, rows)
    todos = codegen.todos(setup, setup.get("dropout", []), state.get("restored_dropouts", []))
    todos += unpenalized + unplaced
    text = codegen.train_py(setup, cfg.class_name, input_names, todos, batchnorm, penalized, options)
    artifacts.save_text(out / artifacts.TRAIN_SCRIPT, text)
    details: dict[str, Any] = {
        "optimizer": {"keras": setup["optimizer"].get("keras_class"), "torch": setup["optimizer"]["class"]},
        "settings": setup["optimizer"]["settings"],
        "schedule": _schedule_row(setup["optimizer"].get("schedule")),
        "losses": [
            {
                "output": loss["output"],
                "keras": loss["keras"],
                "torch": loss["code"],
                "weight": loss["weight"],
            }
            for loss in setup["losses"]
        ],
        "metrics": setup["metrics"],
        "regularizers": [
            {k: p[k] for k in ("variable", "class_name", "config", "parameter")} for p in penalized
        ],
        "todos": todos,
        "dropout_disabled": setup.get("dropout", []),
        "ties": state.get("ties"),
    }
    todo_note = f", {len(todos)} TODO(s) in it" if todos else ""
    if not cfg.training_check:
        details["line"] = f"train.py written{todo_note}; training check not run (--training-check N runs it)"
        return details
    precision = setup.get("precision", "float32")
    note = f" ({setup['precision_note']})" if setup.get("precision_note") else ""
    details["line"] = f"train.py written{todo_note}; {cfg.training_check} steps compared in {precision}{note}"
    details["precision"] = precision
    script = _import_train_py(out)
    model = load_native(out, cfg.class_name)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0  # as TF's side: random masks cannot be matched across frameworks
    batches = artifacts.load_arrays(out / artifacts.TRAINING_BATCHES)
    wide = setup.get("precision") == "float64"
    if wide:
        model.double()  # as TF's side (pipeline/tf_worker/keras_precision.py)
    step_data = [_step_data(batches, input_names, setup, step, wide) for step in range(cfg.training_check)]
    if hasattr(script, "prepare_model"):
        script.prepare_model(model)
    gradients = _first_gradients(script, model, *step_data[0])
    initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
    optimizer = script.make_optimizer(model)
    scheduler = script.make_scheduler(optimizer) if hasattr(script, "make_scheduler") else None
    losses = []
    for inputs, targets in step_data:
        loss, _ = script.train_step(model, optimizer, inputs, targets, scheduler)
        losses.append(float(loss))
    if hasattr(optimizer, "finalize"):
        optimizer.finalize()  # as train.py's main() (and Keras's fit()) end
    final = model.state_dict()
    steps = artifacts.load_arrays(out / artifacts.TF_TRAINING)
    tf_side: dict[str, np.ndarray] = {"loss": steps["loss"]}
    torch_side: dict[str, np.ndarray] = {"loss": np.asarray(losses, np.float64)}
    not_compared, compared_paths = [], set()
    for row in rows:
        key, path, shape = row["torch"], row["tf"], tuple(row["shape"])
        if f"update:{path}" not in steps or key not in final:
            not_compared.append(f"{key} ({path}): not among the trained variables")
            continue
        # Every layout is a rearrangement: the update's layout is the weight's.
        tf_update = weight_layout.to_torch(row["transform"], steps[f"update:{path}"], shape)
        if tf_update is None:
            not_compared.append(f"{key}: transform '{row['transform']}' not known to the check")
            continue
        compared_paths.add(path)
        torch_update = _stored((final[key] - initial[key]).numpy())
        tf_side[f"update:{key}"] = tf_update
        torch_side[f"update:{key}"] = torch_update
        if f"grad:{path}" in steps and key in gradients:
            tf_side[f"grad:{key}"] = weight_layout.to_torch(row["transform"], steps[f"grad:{path}"], shape)
            torch_side[f"grad:{key}"] = _stored(gradients[key])
    _require_every_trainable_variable(steps, compared_paths, gradients, {r["torch"] for r in rows})
    artifacts.save_arrays(out / artifacts.COMPARED["tf_training"], tf_side)
    artifacts.save_arrays(out / artifacts.COMPARED["torch_training"], torch_side)
    first_gradient = _first_differing_gradient(cfg, rows, tf_side, torch_side)
    differences = mapping.torch_optimizer_differences(setup, optimizer.defaults)
    unstable = None if first_gradient or differences else _unstable_trajectory(steps["loss"], losses)
    details.update(
        steps=cfg.training_check,
        tf_losses=[float(v) for v in steps["loss"]],
        torch_losses=losses,
        compared_parameters=sum(k.startswith("update:") for k in tf_side),
        compared_gradients=sum(k.startswith("grad:") for k in tf_side),
        not_compared=not_compared,
        optimizer_differences=differences,
        first_differing_gradient=first_gradient,
        # The runner adds these to the message when the comparison fails (runner._judge).
        unstable_trajectory=unstable,
        suspects=([first_gradient["line"]] if first_gradient else [])
        + ([unstable] if unstable else [])
        + [f"optimizer setting {d}" for d in differences],
    )
    return details


def _step_data(batches, input_names: list[str], setup: dict[str, Any], step: int, wide: bool):
    def tensor(array: np.ndarray) -> torch.Tensor:
        value = torch.from_numpy(array)
        return value.double() if wide and value.is_floating_point() else value

    inputs = [tensor(batches[f"input:{name}"][step]) for name in input_names]
    if "targets" in batches:
        return inputs, tensor(batches["targets"][step])
    return inputs, {
        loss["output"]: tensor(batches[f"targets:{loss['output']}"][step]) for loss in setup["losses"]
    }


def _stored(value: np.ndarray) -> np.ndarray:
    """As TF's side stores them: float32 holds a difference or a gradient to 1e-7 of itself."""
    return value.astype(np.float32) if value.dtype == np.float64 else value


def _first_gradients(script, model: torch.nn.Module, inputs, targets) -> dict[str, np.ndarray]:
    """Each trainable parameter's gradient of train.py's total loss (regularizers included) at the first
    batch, before any update, on a copy (a forward pass in train mode moves BatchNorm's running
    statistics)."""
    copy = deepcopy(model)
    copy.train()
    script.total_loss(copy, copy(*inputs), targets).backward()
    return {
        name: (torch.zeros_like(p) if p.grad is None else p.grad.to_dense()).numpy()
        for name, p in copy.named_parameters()
        if p.requires_grad
    }


def _require_every_trainable_variable(steps, compared_paths: set[str], gradients, mapped: set[str]) -> None:
    """A trainable TF variable no torch parameter holds (or a parameter no TF variable explains)
    would train differently without any number showing it: the check fails instead."""
    missing = sorted(
        k[len("grad:") :] for k in steps if k.startswith("grad:") and k[len("grad:") :] not in compared_paths
    )
    unexplained = sorted(k for k in gradients if k not in mapped)
    if missing or unexplained:
        parts = []
        if missing:
            parts.append(f"TF trainable variables with no torch parameter: {', '.join(missing)}")
        if unexplained:
            parts.append(f"torch parameters with no TF variable: {', '.join(unexplained)}")
        raise ConversionError(
            "training check: "
            + "; ".join(parts)
            + " (weights_map.json): model.py would not train as Keras does"
        )


def _first_differing_gradient(cfg: ModelConfig, rows, tf_side, torch_side) -> dict[str, Any] | None:
    """The differing first-step gradient nearest the loss (errors flow backwards from it, so the
    earlier layers' gradients inherit its mistake): its parameter, TF variable and error."""
    for row in reversed(rows):
        name = f"grad:{row['torch']}"
        if name not in tf_side:
            continue
        tol = resolve_tolerance(cfg.tolerances, "training", name)
        found = compare_arrays(tf_side[name], torch_side[name], tol)
        if found["passed"]:
            continue
        layer = row["tf"].rpartition("/")[0] or row["tf"]
        scale = float(np.abs(tf_side[name]).max())
        return {
            "parameter": row["torch"],
            "tf_variable": row["tf"],
            "layer": layer,
            "max_abs_diff": found["max_abs_diff"],
            "tf_max_abs": scale,
            "line": (
                f"the first step's gradient of {row['torch']} (Keras layer {layer}, variable {row['tf']}) "
                f"differs by up to {found['max_abs_diff']:.3g} (its largest value is {scale:.3g}); the "
                "gradients nearer the loss agree"
            ),
        }
    return None


def _unstable_trajectory(tf_losses, torch_losses) -> str | None:
    """A line when the steps start equal (first loss to rounding) and their difference then grows
    tenfold or more each step: an unstable training, where a difference in the last bits grows as
    it would between any two implementations (or two runs of one in another order), not a mapping."""
    differences = [abs(float(a) - float(b)) for a, b in zip(tf_losses, torch_losses, strict=True)]
    scale = max(1.0, abs(float(tf_losses[0])))
    # From rounding, steadily: a mapping error in the update (an optimizer setting) jumps at step 2.
    if len(differences) < 3 or differences[0] > 1e-9 * scale or differences[1] > 1e-6 * scale:
        return None
    start = max(differences[0], 1e-16 * scale)
    if not all(
        later > 3 * earlier
        for earlier, later in zip([start, *differences[1:]], differences[1:], strict=False)
    ):
        return None
    growth = (differences[-1] / start) ** (1 / (len(differences) - 1))
    if growth < 10:
        return None
    return (
        f"the first step's losses agree to {differences[0]:.1g} and every gradient with them, and the "
        f"difference then grows {growth:.0f}x a step (to {differences[-1]:.2g} at step {len(differences)}): "
        "the training is unstable at this learning rate, where any two implementations part ways; "
        "a smaller learning rate or fewer steps checks the mapping"
    )


def _import_train_py(out: Path):
    spec = importlib.util.spec_from_file_location(
        f"tf2torch_train_{abs(hash(str(out)))}", out / artifacts.TRAIN_SCRIPT
    )
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(out))  # train.py imports model.py from its own directory
    saved = sys.modules.pop("model", None)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(out))
        sys.modules.pop("model", None)
        if saved is not None:
            sys.modules["model"] = saved
    return module
