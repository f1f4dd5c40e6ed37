"""Stage `training` (torch worker): writes train.py beside model.py and, with `training_check: N`,
runs N steps of that train.py's own `make_optimizer` and `train_step` from model.safetensors on the
batches TF trained on.

The runner compares training_tf.npz with training_torch.npz (pair `training`): `loss` (one value per
step) and `update:<parameter>` (each parameter's or buffer's change over the N steps, TF's brought
into torch's layout through weights_map.json). If the comparison fails, the Keras optimizer settings
that the constructed torch optimizer does not have are named as the likely cause. BatchNorm's
running_var is shown but not judged: torch updates it with the unbiased batch variance, Keras with
the biased one (a factor n/(n-1) at batch size n), a difference of the frameworks, listed in train.py.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline import artifacts
from pipeline.config import ModelConfig
from pipeline.errors import ConversionError
from pipeline.stages.native_stage import load_native
from pipeline.training import codegen, mapping


def training(cfg: ModelConfig, fmt: str, out: Path, state: dict[str, Any]) -> dict[str, Any]:
    setup = artifacts.load_json(out / artifacts.TRAINING_SETUP)
    input_names = state["input_names"]
    if "native_module" not in state:
        return {"skipped": "no native model: stage native was skipped, so there is no model.py to train"}
    native = state["native_module"]
    batchnorm = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in native.modules())
    todos = codegen.todos(setup, setup.get("dropout", []), batchnorm)
    text = codegen.train_py(setup, cfg.class_name, input_names, todos)
    artifacts.save_text(out / artifacts.TRAIN_SCRIPT, text)
    details: dict[str, Any] = {
        "optimizer": {"keras": setup["optimizer"].get("keras_class"), "torch": setup["optimizer"]["class"]},
        "settings": setup["optimizer"]["settings"],
        "loss": {"keras": setup["loss"]["keras"], "torch": setup["loss"]["code"]},
        "metrics": setup["metrics"],
        "todos": todos,
        "dropout_disabled": setup.get("dropout", []),
    }
    todo_note = f", {len(todos)} TODO(s) in it" if todos else ""
    if not cfg.training_check:
        details["line"] = f"train.py written{todo_note}; training check not run (--training-check N runs it)"
        return details
    details["line"] = f"train.py written{todo_note}; {cfg.training_check} steps compared"
    script = _import_train_py(out)
    model = load_native(out, cfg.class_name)
    initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
    optimizer = script.make_optimizer(model)
    batches = artifacts.load_arrays(out / artifacts.TRAINING_BATCHES)
    losses = []
    for step in range(cfg.training_check):
        inputs = [torch.from_numpy(batches[f"input:{name}"][step]) for name in input_names]
        loss, _ = script.train_step(model, optimizer, inputs, torch.from_numpy(batches["targets"][step]))
        losses.append(float(loss))
    final = model.state_dict()
    steps = artifacts.load_arrays(out / artifacts.TF_TRAINING)
    tf_side: dict[str, np.ndarray] = {"loss": steps["loss"]}
    torch_side: dict[str, np.ndarray] = {"loss": np.asarray(losses, np.float64)}
    not_compared, unjudged = [], {}
    for row in artifacts.load_json(out / artifacts.WEIGHTS_MAP):
        key, path = row["torch"], row["tf"]
        if f"after:{path}" not in steps or key not in final:
            not_compared.append(f"{key} ({path}): not among the trained variables")
            continue
        layout = _torch_layout(row["transform"], tuple(row["shape"]))
        if layout is None:
            not_compared.append(f"{key}: transform '{row['transform']}' not known to the check")
            continue
        tf_update = layout(steps[f"after:{path}"]) - layout(steps[f"before:{path}"])
        torch_update = (final[key] - initial[key]).numpy()
        if key.endswith("running_var"):
            # By design, not a mapping error: torch tracks the unbiased batch variance, Keras the
            # biased one. Shown, not judged.
            unjudged[key] = float(np.abs(tf_update - torch_update).max())
            continue
        tf_side[f"update:{key}"] = tf_update
        torch_side[f"update:{key}"] = torch_update
    if len(tf_side) == 1:
        raise ConversionError(
            "training check: no TF variable could be matched to a parameter (weights_map.json)"
        )
    artifacts.save_arrays(out / artifacts.COMPARED["tf_training"], tf_side)
    artifacts.save_arrays(out / artifacts.COMPARED["torch_training"], torch_side)
    differences = mapping.torch_optimizer_differences(setup, optimizer.defaults)
    details.update(
        steps=cfg.training_check,
        tf_losses=[float(v) for v in steps["loss"]],
        torch_losses=losses,
        compared_parameters=len(tf_side) - 1,
        not_compared=not_compared,
        running_var_max_abs_diff=unjudged,
        optimizer_differences=differences,
        # The runner adds these to the message when the comparison fails (runner._judge).
        suspects=[f"optimizer setting {d}" for d in differences],
    )
    return details


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


def _torch_layout(transform: str, shape: tuple[int, ...]):
    """The function that brings a TF variable into its torch parameter's layout, from the transform
    weights_map.json names; None for one this check does not know."""
    if transform == "none":
        return lambda a: a.reshape(shape)
    if transform.startswith("transpose"):
        return lambda a: a.T
    if transform == "permute(3, 2, 0, 1)":
        return lambda a: a.transpose(3, 2, 0, 1)
    if transform.startswith("reshape(kh, kw, 1,"):
        return lambda a: a.reshape(a.shape[0], a.shape[1], 1, -1).transpose(3, 2, 0, 1)
    if transform.startswith("reshape("):
        return lambda a: a.reshape(shape)
    return None
