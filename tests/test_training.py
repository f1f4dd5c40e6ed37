"""Issue "Carry the training setup over": train.py from the Keras compile() settings, and the training
check (N optimizer steps in TF and with train.py, compared) on real compiled models."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from cli_runner import read_report, run_cli, run_command

from pipeline.common.training_mapping import FAULT_ENV, map_setup


def _training_stage(out):
    return next(s for s in read_report(out)["stages"] if s["name"] == "training")


@pytest.mark.parametrize(
    ("model", "construction", "losses"),
    [
        (
            "train_cnn.keras",
            "torch.optim.SGD(params, lr=0.05, momentum=0.9, nesterov=False)",
            "categorical_crossentropy",
        ),
        (
            "train_mlp.keras",
            "KerasAdam(params, lr=0.01, beta_1=0.9, beta_2=0.999, epsilon=0.001",
            "nn.CrossEntropyLoss()",
        ),
        (
            "train_lstm.keras",
            "KerasRMSprop(params, lr=0.01, rho=0.9, momentum=0.0, epsilon=1e-07",
            "nn.MSELoss()",
        ),
    ],
    ids=["cnn-sgd-momentum-cce", "mlp-batchnorm-adam-epsilon", "lstm-rmsprop-mse"],
)
def test_training_check_passes_with_the_mapped_setup(models, tmp_path, model, construction, losses):
    out = tmp_path / "run"
    proc = run_command("convert", models / model, "--training-check", "3", "--out", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    stage = _training_stage(out)
    assert stage["status"] == "pass"
    details = stage["details"]
    assert len(details["tf_losses"]) == len(details["torch_losses"]) == 3
    assert details["optimizer_differences"] == [] and details["not_compared"] == []
    # Every trainable TF variable's update was compared, each parameter's first-step gradient, and
    # the losses.
    judged = {c["output"] for c in stage["comparisons"]}
    rows = [row["torch"] for row in _weights_map(out)]
    trained = {f"update:{key}" for key in rows}
    gradients = {
        f"grad:{key}" for key in rows if not key.endswith(("running_mean", "running_var", "bias_hh_l0"))
    }
    assert judged == {"loss"} | trained | gradients and len(trained) >= 2
    # The steps really trained: TF's loss moved, and so did each weight.
    assert len(set(details["tf_losses"])) == 3
    train_py = (out / "train.py").read_text()
    assert construction in train_py and f"loss_fn = {losses}" in train_py


ISSUE_MODELS = {
    # Keras's own initial weights: a zero Conv2D bias the graph optimisers drop must come back.
    "train_conv_sgd.keras": None,
    "train_conv_pool_nesterov.keras": None,
    "train_two_heads.keras": None,
    "train_gru_text.keras": [{"name": "tokens", "shape": [4, 9], "range": [0, 20]}],
    "train_residual_bn.keras": None,
    "train_schedule_decay_dropout.keras": None,
    # issue 32: Nadam (Keras's momentum schedule) with global_clipnorm, Huber loss, Conv1D + LSTM
    "train_conv1d_lstm_nadam.keras": None,
    # issue 32: parameters at Keras's initial constants, which the export folds away (the marked
    # export ties them by identity): LayerNorm beta, two BatchNorms after a conv, attention biases
    "train_fresh_layernorm.keras": None,
    "train_fresh_two_batchnorms.keras": None,
    "train_fresh_attention.keras": None,
}


@pytest.mark.parametrize("model", list(ISSUE_MODELS), ids=[m.split(".")[0] for m in ISSUE_MODELS])
def test_models_a_user_brings_train_as_keras_does_for_five_steps(models, tmp_path, model):
    config = {"model": str(models / model), "training_check": 5}
    if ISSUE_MODELS[model]:
        config["inputs"] = ISSUE_MODELS[model]
    (tmp_path / "config.yaml").write_text(json.dumps(config))
    out = tmp_path / "run"
    proc = run_command("convert", "--config", tmp_path / "config.yaml", "--out", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Every trainable Keras variable is a torch parameter, tied on the marked export whatever its value.
    native = next(s for s in read_report(out)["stages"] if s["name"] == "native")["details"]
    assert native["ties"].startswith("by identity"), native["ties"]
    layers = json.loads((out / "tf_layers.json").read_text())["layers"]
    trainable = {w["path"] for layer in layers for w in layer["weights"] if w["trainable"]}
    assert trainable <= {row["tf"] for row in _weights_map(out)}
    stage = _training_stage(out)
    details = stage["details"]
    trained = {
        row["torch"]
        for row in _weights_map(out)
        if not row["torch"].endswith(("running_var", "running_mean"))
    }
    judged = {c["output"] for c in stage["comparisons"]}
    # Each parameter's update over the 5 steps and its first-step gradient, judged.
    assert {f"update:{k}" for k in trained} <= judged
    assert {f"grad:{k}" for k in trained} <= judged
    assert len(set(details["tf_losses"])) == 5 and details["first_differing_gradient"] is None
    # Both sides ran in float64 (the default): the losses agree far inside the tolerance (to 1e-8:
    # the .keras file stores the learning rate as a float32, 0.004999999888 where train.py has 0.005).
    assert details["precision"] == "float64"
    np.testing.assert_allclose(details["torch_losses"], details["tf_losses"], rtol=1e-6)


def test_weight_regularizers_are_in_train_py_and_on_both_sides_of_the_check(models, tmp_path):
    """Issue 32's L2-regularised MLP with AdamW + CosineDecay + clipnorm, every regularizer class of
    keras.regularizers on it: train.py adds each penalty to its loss, with no TODO, and 5 steps agree
    with Keras's, whose loss includes model.losses (float64, so to 1e-6 of each loss)."""
    out = tmp_path / "run"
    proc = run_command(
        "convert", models / "train_regularized_adamw.keras", "--training-check", "5", "--out", out
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    details = _training_stage(out)["details"]
    assert details["todos"] == [] and details["precision"] == "float64"
    assert {(r["variable"], r["class_name"], r["parameter"]) for r in details["regularizers"]} == {
        ("hidden/kernel", "L2", "hidden.weight"),
        ("hidden/bias", "L1", "hidden.bias"),
        ("mid/kernel", "L1L2", "mid.weight"),
        ("cols/kernel", "OrthogonalRegularizer", "cols.weight"),
        ("rows/kernel", "OrthogonalRegularizer", "rows.weight"),
    }
    train_py = (out / "train.py").read_text()
    assert "def orthogonal_penalty(" in train_py and "loss = total_loss(model, outputs, targets)" in train_py
    assert "TODO" not in train_py
    np.testing.assert_allclose(details["torch_losses"], details["tf_losses"], rtol=1e-6)
    # report.md says, per Keras setting, what train.py does with it: all mapped here.
    report = (out / "report.md").read_text()
    assert "| learning_rate schedule | CosineDecay(initial_learning_rate=0.01, decay_steps=10" in report
    assert "| regularizer mid/kernel | L1L2(l1=0.003, l2=0.004) | penalty on mid.weight | mapped |" in report
    assert "| optimizer clipnorm | 1.0 | clipnorm=1.0 | mapped |" in report
    assert "not mapped" not in report


@pytest.mark.parametrize("model", ["train_activity_penalties.keras", "train_activity_conv.keras"])
def test_activity_regularizers_penalise_the_layer_output_model_py_names(models, tmp_path, model):
    """Keras adds an activity regularizer's penalty on the layer's output (after its activation),
    divided by the batch size: model.py returns that output from an nn.Identity named after the
    layer (placed by value on the marked export), train.py reads it with a forward hook, and 5 steps
    agree with Keras's, whose loss includes the penalties."""
    out = tmp_path / "run"
    proc = run_command("convert", models / model, "--training-check", "5", "--out", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    details = _training_stage(out)["details"]
    layers = {"train_activity_penalties.keras": ["hidden", "mid"], "train_activity_conv.keras": ["conv"]}[
        model
    ]
    assert details["todos"] == []
    assert [(r["variable"], r["parameter"]) for r in details["regularizers"]] == [
        (f"{layer} output", f"{layer}_output output") for layer in layers
    ]
    model_py, train_py = (out / "model.py").read_text(), (out / "train.py").read_text()
    for layer in layers:
        assert f"self.{layer}_output = nn.Identity()" in model_py
        assert f"({layer + '_output'!r}, {layer!r}, " in train_py
    if "hidden" in layers:  # Keras regularizes the output, then drops: the Dropout reads the Identity
        forward = model_py[model_py.index("def forward") :]
        assert forward.index("self.hidden_output(") < forward.index("self.dropout")
    np.testing.assert_allclose(details["torch_losses"], details["tf_losses"], rtol=1e-6)


def test_a_regularizer_train_py_does_not_add_fails_the_check_instead_of_passing(models, tmp_path):
    """An activity regularizer train.py cannot add (its layer's output is no tensor of the model: the
    layer sits in a nested model) is a TODO, and since the TF side trains what fit() trains
    (model.losses included), the check fails on the losses rather than compare something Keras does
    not train."""
    out = tmp_path / "run"
    proc = run_command(
        "convert", models / "train_activity_regularizer.keras", "--training-check", "3", "--out", out
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    stage = _training_stage(out)
    assert stage["status"] == "tolerance_fail"
    assert any(
        t.startswith("hidden activity_regularizer L2") and "no node of model.py computes" in t
        for t in stage["details"]["todos"]
    )
    losses = next(c for c in stage["comparisons"] if c["output"] == "loss")
    assert not losses["passed"]
    tf_losses, torch_losses = stage["details"]["tf_losses"], stage["details"]["torch_losses"]
    assert all(t > p for t, p in zip(tf_losses, torch_losses, strict=True))  # Keras's includes the penalty


def test_float32_is_the_checks_precision_where_asked_or_where_keras_cannot_widen(models, tmp_path):
    """`--training-precision float32` checks in the model's own precision; a legacy tf_keras model
    cannot be widened, so it is checked in float32 and the report says why."""
    out = tmp_path / "float32"
    proc = run_command(
        "convert",
        models / "train_conv_sgd.keras",
        "--training-check",
        "3",
        "--training-precision",
        "float32",
        "--out",
        out,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _training_stage(out)["details"]["precision"] == "float32"
    assert "3 steps compared in float32" in proc.stdout
    config = {
        "model": str(models / "legacy.h5"),
        "training_check": 3,
        # SGD: in float32, Adam divides the Dense bias's gradient that the BatchNorm after it cancels
        # (rounding noise) by its own root, and the updates part ways (the reason for float64).
        "compile": {"optimizer": {"class_name": "SGD", "config": {"learning_rate": 0.01}}, "loss": "mse"},
    }
    (tmp_path / "legacy.yaml").write_text(json.dumps(config))
    out = tmp_path / "legacy"
    proc = run_command("convert", "--config", tmp_path / "legacy.yaml", "--out", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _training_stage(out)["details"]["precision"] == "float32"
    tf_stage = next(s for s in read_report(out)["stages"] if s["name"] == "tf_training")
    assert tf_stage["details"]["precision_note"] == (
        "float64 was asked for, but legacy tf_keras models keep their float32 variables"
    )


def test_the_zero_conv_bias_keras_starts_from_is_a_parameter_model_py_trains(models, tmp_path):
    out = tmp_path / "run"
    assert run_command("convert", models / "train_conv_sgd.keras", "--training", "--out", out).returncode == 0
    assert "nn.Conv2d(2, 8, 3)" in (out / "model.py").read_text()  # not bias=False
    conv = {row["torch"]: row["tf"] for row in _weights_map(out) if row["torch"].startswith("conv2d")}
    assert sorted(conv.values())[0].endswith("/bias") and len(conv) == 2  # layer names number on


def test_schedules_weight_decay_and_dropout_carry_over_into_train_py_and_model_py(models, tmp_path):
    out = tmp_path / "run"
    proc = run_command("convert", models / "train_schedule_decay_dropout.keras", "--training", "--out", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    train_py = (out / "train.py").read_text()
    assert "KerasSGD(params, lr=0.05, momentum=0.9, nesterov=False, weight_decay=0.01)" in train_py
    assert "def learning_rate(step, initial_learning_rate=0.05, decay_steps=2, decay_rate=0.5" in train_py
    assert "scheduler.step()" in train_py and "TODO" not in train_py
    # Keras's Dropout is back in model.py: active in train mode, nothing in eval.
    model_py = (out / "model.py").read_text()
    assert "nn.Dropout(p=0.25)" in model_py
    details = _training_stage(out)["details"]
    assert details["todos"] == [] and len(details["dropout_disabled"]) == 1


def test_a_wrong_gradient_is_named_with_its_layer_and_variable(models, tmp_path):
    out = tmp_path / "run"
    env = {FAULT_ENV: "mse_sum"}
    proc = run_cli("convert", models / "train_conv_sgd.keras", "--training-check", "2", "--out", out, env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    first = _training_stage(out)["details"]["first_differing_gradient"]
    # The loss summed instead of averaged scales every gradient: the one nearest the loss is named.
    assert (first["parameter"], first["tf_variable"], first["layer"]) == ("probs.bias", "probs/bias", "probs")
    assert (
        "likely cause: the first step's gradient of probs.bias (Keras layer probs, variable probs/bias)"
        in proc.stdout
    )


def test_a_two_headed_train_py_trains_on_its_own(models, tmp_path):
    out = tmp_path / "run"
    assert (
        run_command("convert", models / "train_two_heads.keras", "--training", "--out", out).returncode == 0
    )
    rng = np.random.default_rng(0)
    np.savez(
        out / "data.npz",
        features=rng.random((20, 12), dtype=np.float32),
        targets_value=rng.random((20, 2), dtype=np.float32),
        targets_kind=rng.integers(0, 4, 20).astype(np.int32),
    )
    proc = subprocess.run(
        [sys.executable, "train.py", "data.npz", "--epochs", "2", "--batch-size", "8"],
        cwd=out,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len([line for line in proc.stdout.splitlines() if line.startswith("epoch ")]) == 2


def test_batchnorm_trains_as_batchnorm_with_keras_momentum_translated(models, tmp_path):
    out = tmp_path / "run"
    assert (
        run_command("convert", models / "train_mlp.keras", "--training-check", "3", "--out", out).returncode
        == 0
    )
    model_py = (out / "model.py").read_text()
    # Keras momentum 0.9 (weight of the old statistics) is torch's 0.1 (weight of the new batch),
    # torch's default, which model.py leaves out as a person would.
    assert "nn.BatchNorm1d(16, eps=0.001)" in model_py
    stage = _training_stage(out)
    assert {"update:batch_normalization.weight", "update:batch_normalization.running_mean"} <= {
        c["output"] for c in stage["comparisons"]
    }
    # Keras's moving variance follows the biased batch variance: train.py's hook makes torch's do too,
    # and the update is judged like every other.
    assert "update:batch_normalization.running_var" in {c["output"] for c in stage["comparisons"]}
    assert "keras_batchnorm_statistics(model)" in (out / "train.py").read_text()
    assert "dropout (Dropout)" in stage["details"]["dropout_disabled"]


def test_a_wrong_adam_epsilon_fails_the_check_and_is_named(models, tmp_path):
    out = tmp_path / "run"
    env = {FAULT_ENV: "adam_epsilon"}
    proc = run_cli("convert", models / "train_mlp.keras", "--training-check", "3", "--out", out, env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "training     TOLERANCE FAIL" in proc.stdout
    assert (
        "likely cause: optimizer setting epsilon: Keras 0.001, torch optimizer epsilon=1e-08" in proc.stdout
    )
    failed = {c["output"] for c in _training_stage(out)["comparisons"] if not c["passed"]}
    assert "loss" in failed and any(name.endswith(".weight") for name in failed)


def test_train_py_runs_on_its_own_without_this_package(models, tmp_path):
    out = tmp_path / "run"
    assert run_command("convert", models / "train_cnn.keras", "--training", "--out", out).returncode == 0
    rng = np.random.default_rng(0)
    np.savez(
        out / "data.npz",
        image=rng.random((40, 28, 28, 1), dtype=np.float32),
        targets=np.eye(10, dtype=np.float32)[rng.integers(0, 10, 40)],
    )
    blocker = tmp_path / "block"
    for name in ("pipeline", "tensorflow", "keras", "onnx2torch", "onnx", "tf2onnx"):
        (blocker / name).mkdir(parents=True)
        (blocker / name / "__init__.py").write_text(f"raise ImportError('{name} must not be needed')\n")
    proc = subprocess.run(
        [sys.executable, "train.py", "data.npz", "--epochs", "2", "--batch-size", "8"],
        cwd=out,
        env={**os.environ, "PYTHONPATH": str(blocker)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    epochs = [line for line in proc.stdout.splitlines() if line.startswith("epoch ")]
    assert len(epochs) == 2 and "accuracy" in epochs[0]
    assert (out / "trained.safetensors").is_file()


def test_settings_without_a_mapping_are_todos_not_silent_replacements(models, tmp_path):
    """A train.py with TODOs leaves out part of what Keras trains: the training stage fails (exit 1)
    unless the user accepts the TODOs, and then the verdict says PASS with them."""
    out = tmp_path / "refused"
    proc = run_command("convert", models / "train_unmapped.keras", "--training", "--out", out)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    stage = next(s for s in read_report(out)["stages"] if s["name"] == "training")
    assert stage["status"] == "tolerance_fail" and "training_allow_todos: true" in stage["error"]
    out = tmp_path / "run"
    proc = run_command(
        "convert", models / "train_unmapped.keras", "--training", "--training-allow-todos", "--out", out
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "verdict: PASS with 3 TODO(s) in train.py (exit 0)" in proc.stdout
    train_py = (out / "train.py").read_text()
    assert "# TODO: optimizer MultiOptimizer" in train_py
    assert "# TODO: loss circle" in train_py
    assert "# TODO: metric 'auc': not mapped" in train_py
    todos = _training_stage(out)["details"]["todos"]
    assert any("MultiOptimizer" in t for t in todos) and any("circle" in t for t in todos)
    report = (out / "report.md").read_text()
    assert report.count("| - | - | TODO in train.py | not mapped: ") == 3


def test_a_model_saved_without_compile_says_how_to_get_a_training_setup(models, tmp_path):
    proc = run_command("convert", models / "two_inputs.keras", "--training", "--out", tmp_path / "run")
    assert proc.returncode == 2
    assert "has no training configuration: save the model after model.compile(" in proc.stdout


# --- the mapping, on Keras configs as the files store them ----------------------------------------------


def _setup(optimizer, loss="mse", metrics=None):
    return map_setup({"optimizer": optimizer, "loss": loss, "metrics": metrics or []})


def test_optimizer_given_by_name_gets_keras_defaults_not_torchs():
    setup = _setup({"class_name": "adam", "config": {}})
    assert setup["optimizer"]["class"] == "KerasAdam"
    assert setup["optimizer"]["kwargs"]["epsilon"] == 1e-7  # torch.optim.Adam's default is 1e-8
    setup = _setup({"class_name": "Adagrad", "config": {}})
    assert setup["optimizer"]["kwargs"]["initial_accumulator_value"] == 0.1  # torch's default is 0


def test_a_legacy_optimizers_decay_is_no_todo_at_zero_and_one_otherwise():
    """tf_keras (.h5) optimizer configs carry `decay`, Keras 3's do not: 0 changes nothing."""
    assert not _setup({"class_name": "Adam", "config": {"learning_rate": 0.001, "decay": 0.0}})["todos"]
    todos = _setup({"class_name": "Adam", "config": {"learning_rate": 0.001, "decay": 0.01}})["todos"]
    assert todos == ["optimizer Adam decay=0.01: not mapped"]


def test_weight_decay_is_decoupled_as_keras_applies_it_for_every_optimizer():
    setup = _setup({"class_name": "AdamW", "config": {"learning_rate": 0.001, "weight_decay": 0.05}})
    assert setup["optimizer"]["kwargs"]["weight_decay"] == 0.05 and not setup["todos"]
    # torch.optim.SGD's weight_decay is an L2 term that momentum carries: Keras's SGD is its own class.
    setup = _setup({"class_name": "SGD", "config": {"learning_rate": 0.1, "weight_decay": 0.01}})
    assert setup["optimizer"]["class"] == "KerasSGD" and not setup["todos"]
    assert _setup({"class_name": "SGD", "config": {}})["optimizer"]["class"] == "torch.optim.SGD"


@pytest.mark.parametrize(
    ("loss", "code", "target"),
    [
        (
            {
                "class_name": "CategoricalCrossentropy",
                "config": {"from_logits": True, "label_smoothing": 0.1},
            },
            "nn.CrossEntropyLoss(label_smoothing=0.1)",
            "one_hot",
        ),
        (
            {"class_name": "SparseCategoricalCrossentropy", "config": {"from_logits": False}},
            "sparse_categorical_crossentropy",
            "class_index",
        ),
        (
            {"class_name": "BinaryCrossentropy", "config": {"from_logits": True}},
            "functools.partial(binary_crossentropy, from_logits=True)",
            "binary",
        ),
        ({"class_name": "Huber", "config": {"delta": 2.0}}, "nn.HuberLoss(delta=2.0)", "real"),
        (
            {"class_name": "MeanAbsoluteError", "config": {"reduction": "sum"}},
            "nn.L1Loss(reduction='sum')",
            "real",
        ),
    ],
)
def test_losses_map_with_logits_smoothing_and_reduction(loss, code, target):
    mapped = _setup({"class_name": "SGD", "config": {}}, loss)["losses"][0]
    assert (mapped["code"], mapped["target"]) == (code, target)


def test_accuracy_follows_the_loss_as_in_keras():
    metrics = _setup({"class_name": "SGD", "config": {}}, "sparse_categorical_crossentropy", ["accuracy"])[
        "metrics"
    ]
    assert metrics == [{"keras": "accuracy", "torch": "sparse_categorical_accuracy"}]


def test_each_output_gets_its_keras_loss_and_weight():
    outputs = [{"name": "kind", "rank": 2}, {"name": "tags", "rank": 3}, {"name": "aux", "rank": 2}]
    keras = {
        "optimizer": {"class_name": "SGD", "config": {}},
        "loss": {
            "kind": "categorical_crossentropy",
            "tags": {"class_name": "SparseCategoricalCrossentropy", "config": {"from_logits": True}},
        },
        "loss_weights": {"kind": 0.5},
    }
    losses = map_setup(keras, outputs)["losses"]
    assert [(x["output"], x["index"], x["weight"]) for x in losses] == [("kind", 0, 0.5), ("tags", 1, 1.0)]
    # A sequence of class scores: torch's cross-entropy wants the classes on axis 1, Keras on the last.
    assert losses[1]["code"] == "classes_last(nn.CrossEntropyLoss())"
    # One loss for several outputs is Keras's loss for each of them; a list goes by position.
    assert len(map_setup({**keras, "loss": "mse", "loss_weights": None}, outputs)["losses"]) == 3
    listed = map_setup({**keras, "loss": ["mse", None, "mae"], "loss_weights": [1.0, 1.0, 2.0]}, outputs)
    assert [(x["output"], x["kind"], x["weight"]) for x in listed["losses"]] == [
        ("kind", "mse", 1.0),
        ("aux", "mae", 2.0),
    ]


def test_weight_layouts_bring_keras_variables_into_torch_order():
    from pipeline.common import weight_layout

    kernel = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)  # (kh, kw, in, out)
    assert weight_layout.conv_kernel_permutation(4) == "permute(3, 2, 0, 1)"
    conv = weight_layout.to_torch("permute(3, 2, 0, 1)", kernel, (5, 4, 2, 3))
    assert conv[1, 2, 0, 1] == kernel[0, 1, 2, 1]
    # A GRU: Keras's gate blocks z, r, h become torch's r, z, n, in the kernel and in each bias row.
    gru_kernel = np.array([[0, 0, 1, 1, 2, 2]], np.float32)  # (in=1, 3 gates x hidden=2)
    torch_kernel = weight_layout.to_torch("transpose (gates z, r, h as r, z, n)", gru_kernel, (6, 1))
    assert torch_kernel.ravel().tolist() == [1, 1, 0, 0, 2, 2]
    bias = np.stack([gru_kernel[0], gru_kernel[0] + 10])
    assert weight_layout.to_torch("row 1, gates reordered", bias, (6,)).tolist() == [11, 11, 10, 10, 12, 12]
    assert weight_layout.to_torch("an unknown transform", kernel, kernel.shape) is None


def _weights_map(out):
    return json.loads((out / "weights_map.json").read_text())


# Each optimizer setting against Keras's own update, on one variable: the Keras optimizer in a
# TensorFlow subprocess, the mapped torch optimizer (train.py's class and arguments) here.
OPTIMIZERS = [
    {"class_name": "SGD", "config": {"learning_rate": 0.1}},
    {"class_name": "SGD", "config": {"learning_rate": 0.1, "momentum": 0.9, "nesterov": True}},
    {"class_name": "Adam", "config": {"learning_rate": 0.01, "epsilon": 1e-3}},
    {"class_name": "Adam", "config": {"learning_rate": 0.01, "amsgrad": True, "beta_2": 0.9}},
    {"class_name": "AdamW", "config": {"learning_rate": 0.01, "weight_decay": 0.1}},
    {"class_name": "SGD", "config": {"learning_rate": 0.1, "momentum": 0.9, "weight_decay": 0.05}},
    {
        "class_name": "SGD",
        "config": {"learning_rate": 0.1, "momentum": 0.8, "nesterov": True, "weight_decay": 0.1},
    },
    {"class_name": "RMSprop", "config": {"learning_rate": 0.01, "weight_decay": 0.1}},
    {
        "class_name": "SGD",
        "config": {
            "learning_rate": {
                "module": "keras.optimizers.schedules",
                "class_name": "ExponentialDecay",
                "config": {"initial_learning_rate": 0.1, "decay_steps": 2, "decay_rate": 0.5},
            }
        },
    },
    {
        "class_name": "Adam",
        "config": {
            "learning_rate": {
                "module": "keras.optimizers.schedules",
                "class_name": "CosineDecay",
                "config": {"initial_learning_rate": 0.05, "decay_steps": 3, "alpha": 0.1},
            }
        },
    },
    {
        "class_name": "SGD",
        "config": {
            "learning_rate": {
                "module": "keras.optimizers.schedules",
                "class_name": "PiecewiseConstantDecay",
                "config": {"boundaries": [0, 2], "values": [0.1, 0.05, 0.01]},
            }
        },
    },
    {"class_name": "RMSprop", "config": {"learning_rate": 0.01}},
    {
        "class_name": "RMSprop",
        "config": {"learning_rate": 0.01, "centered": True, "momentum": 0.5, "rho": 0.8},
    },
    {
        "class_name": "Adagrad",
        "config": {"learning_rate": 0.1, "initial_accumulator_value": 0.2, "epsilon": 1e-3},
    },
]
_KERAS_STEPS = """
import json, os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np, keras
dtype = sys.argv[3]
keras.config.set_floatx(dtype)  # the optimizer's own variables (learning rate) too
rng = np.random.default_rng(0)
start, grads = rng.standard_normal(6).astype(dtype), rng.standard_normal((4, 6)).astype(dtype)
out = {"start": start, "grads": grads}
for i, entry in enumerate(json.loads(sys.argv[2])):
    optimizer = keras.optimizers.get(entry)
    variable = keras.Variable(start.copy(), dtype=dtype)
    values = []
    for g in grads:
        optimizer.apply_gradients([(keras.ops.convert_to_tensor(g), variable)])
        values.append(np.array(variable.numpy()))
    out[f"steps{i}"] = np.stack(values)
np.savez(sys.argv[1], **out)
"""

# float32: the update rules (a wrong epsilon or momentum form is 1e-3 off). float64, where the
# training check runs: each update to 1e-6 of the largest, which Keras's own float32 casts of its
# hyper-parameters exceed (Adam's beta_2 as a float32 moves its bias correction by 6e-6 of every
# update); torch.optim.SGD's exact 0.9 momentum (Keras: 0.8999999762) and Keras's schedules computed
# in float32 stay within it (7e-10 where updates nearly cancel).
PRECISIONS = {"float32": {"rtol": 2e-5, "atol": 2e-6}, "float64": {"rtol": 1e-6, "scaled_atol": 1e-6}}


@pytest.mark.parametrize("dtype", list(PRECISIONS))
def test_mapped_optimizers_follow_keras_update_rules_step_by_step(tmp_path, dtype):
    import torch

    from pipeline.torch_worker.training import codegen, keras_compat

    target = tmp_path / "keras_steps.npz"
    subprocess.run(
        [sys.executable, "-c", _KERAS_STEPS, str(target), json.dumps(OPTIMIZERS), dtype],
        check=True,
        capture_output=True,
        timeout=300,
    )
    keras_steps = np.load(target)
    start = keras_steps["start"]
    for i, entry in enumerate(OPTIMIZERS):
        mapped = map_setup({"optimizer": entry, "loss": "mse"})["optimizer"]
        assert not map_setup({"optimizer": entry, "loss": "mse"})["todos"], entry
        cls = (
            torch.optim.SGD
            if mapped["class"] == "torch.optim.SGD"
            else getattr(keras_compat, mapped["class"])
        )
        param = torch.nn.Parameter(torch.from_numpy(start.copy()))
        optimizer = cls([param], **mapped["kwargs"])
        scheduler = None
        if mapped["schedule"]:  # train.py's own learning_rate() and LambdaLR
            namespace = {"torch": torch, "math": math}
            exec("\n".join(codegen._schedule_lines(mapped["schedule"])), namespace)  # noqa: S102
            scheduler = namespace["make_scheduler"](optimizer)
        for step, grad in enumerate(keras_steps["grads"]):
            param.grad = torch.from_numpy(grad.copy())
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            # The change from the start: what the check compares, and where a relative error shows.
            expected = keras_steps[f"steps{i}"][step] - start
            tolerance = dict(PRECISIONS[dtype])
            if "scaled_atol" in tolerance:
                tolerance["atol"] = tolerance.pop("scaled_atol") * float(np.abs(expected).max())
            np.testing.assert_allclose(
                param.detach().numpy() - start, expected, **tolerance, err_msg=f"{entry} step {step + 1}"
            )


def test_an_unstable_training_is_told_apart_from_a_mapping_error():
    """InceptionV3 (139x139, batch 4) under SGD at 1e-3, measured in float64: the first losses agree
    to 3e-13 and the difference grows about 50x a step; a mapping error differs from the first step."""
    from pipeline.torch_worker.training.stage import _unstable_trajectory

    tf_losses = [
        7.0068600777945385,
        7.029120772622537,
        6.773280007079944,
        7.202382425905014,
        7.365785810195209,
    ]
    measured = [-2.86881630e-13, 1.67741376e-11, -6.81564138e-10, 1.07689146e-08, -1.55074814e-06]
    line = _unstable_trajectory(tf_losses, [t - d for t, d in zip(tf_losses, measured, strict=True)])
    assert line is not None and "the training is unstable at this learning rate" in line
    assert "grows 48x a step (to 1.6e-06 at step 5)" in line
    # A mapping error: the first losses already differ, or (an optimizer's) they jump at step 2
    # (Adam's epsilon as torch's default, measured: 2e-16, then 0.025, 0.032).
    assert _unstable_trajectory(tf_losses, [t + 1e-4 * (i + 1) for i, t in enumerate(tf_losses)]) is None
    jump = [2e-16, 0.025, 0.032, 0.033, 0.034]
    assert _unstable_trajectory(tf_losses, [t - d for t, d in zip(tf_losses, jump, strict=True)]) is None
    # Rounding that stays rounding.
    assert _unstable_trajectory(tf_losses, [t + 1e-13 for t in tf_losses]) is None


def test_the_training_sweep_page_lists_each_unmapped_case_once_and_its_figures_add_up():
    """docs/training.md's "Training sweep, measured": the mapped / total figures per Keras list and
    one row per case not mapped (what `python -m pipeline.coverage.training_sweep` checks its run
    against) must agree."""
    import re

    from pipeline.coverage.training_sweep import LISTS, TRAINING_PAGE, known_failures

    listed = known_failures()
    section = TRAINING_PAGE.read_text()[TRAINING_PAGE.read_text().index("## Training sweep, measured") :]
    # The last column: the figures of the sweep as the code stands.
    figures = re.findall(
        r"^\| keras\.\S+(?: x options)? \|(?: \d+ / \d+ \|)* (\d+) / (\d+) \|$", section, flags=re.MULTILINE
    )
    assert len(figures) == len(LISTS)
    assert sum(int(total) - int(mapped) for mapped, total in figures) == len(listed)
    assert {name.split(".")[0] for name in listed} <= set(LISTS)
    assert all(reason.strip() for reason in listed.values())


def test_sgd_with_nesterov_but_no_momentum_is_plain_sgd_as_in_keras():
    """Keras's Nesterov step with momentum 0 is a plain SGD step; torch.optim.SGD refuses nesterov
    without momentum, so train.py writes it without (the training sweep's SGD.nesterov case trains
    as Keras does)."""
    setup = map_setup({"optimizer": {"class_name": "SGD", "config": {"nesterov": True}}, "loss": "mse"})
    assert setup["optimizer"]["kwargs"]["nesterov"] is False and setup["todos"] == []
    setup = map_setup(
        {"optimizer": {"class_name": "SGD", "config": {"nesterov": True, "momentum": 0.9}}, "loss": "mse"}
    )
    assert setup["optimizer"]["kwargs"]["nesterov"] is True


def test_a_mixed_precision_model_is_a_todo_never_a_silent_float32_train_py(models, write_config, tmp_path):
    """Keras computes a mixed_float16 layer in float16 (float32 weights, a scaled loss); train.py
    trains model.py in float32, so the training stage fails with the reason unless the TODO is
    accepted. The float16 layer's outputs are 5e-4 from float32's, hence the loose tolerances."""
    loose = "{atol: 1.0e-2, rtol: 1.0e-2}"
    config = write_config(
        "tolerances:\n"
        + "".join(f"  {pair}: {loose}\n" for pair in ("tf_vs_onnx", "onnx_vs_torch", "tf_vs_torch"))
    )
    out = tmp_path / "run"
    proc = run_command(
        "convert", models / "train_mixed_precision.keras", "--config", config, "--training", "--out", out
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    todos = _training_stage(out)["details"]["todos"]
    assert any(t.startswith("mixed precision mixed_float16 (1 layer(s): half)") for t in todos), todos
    assert "# TODO: mixed precision mixed_float16" in (out / "train.py").read_text()
