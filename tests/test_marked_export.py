"""The marked export ties model.py's parameters to Keras variables by identity
(pipeline/tf_worker/marked_export.py, pipeline/torch_worker/marked_ties.py)."""

from __future__ import annotations

import json

import numpy as np
from cli_runner import read_report, run_command

from pipeline.tf_worker.marked_export import mark


def test_marks_leave_no_two_variables_alike_and_none_of_one_value():
    # What a freshly built model holds: zero biases, unit gammas, ConvNeXt's 1e-6 layer scales (whose
    # float32 std is rounding noise, not zero), a random kernel; two variables of each constant.
    rng = np.random.default_rng(0)
    kernel = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    variables = [np.zeros(4, np.float32), np.zeros(4, np.float32), np.ones(4, np.float32)]
    variables += [np.full(96, 1e-6, np.float32), np.full(96, 1e-6, np.float32), kernel]
    marked = [mark(v, rng) for v in variables]
    for original, m in zip(variables, marked, strict=True):
        assert m.dtype == original.dtype and m.shape == original.shape
        assert len(np.unique(m)) == m.size  # no element repeats: no transform of it is ambiguous
        # Near the variable's own values: the marked model computes values of the same size.
        wide = original.astype(np.float64)
        spread = max(float(np.std(wide)), 0.1 * float(np.abs(wide).max())) or 1.0
        assert 0 < np.abs(m - wide).max() <= 0.1 * spread * 1.0001
    # Alike in no layout: not even as sorted multisets of values.
    for i, a in enumerate(marked):
        for b in marked[i + 1 :]:
            assert not (a.size == b.size and np.array_equal(np.sort(a.ravel()), np.sort(b.ravel())))


def test_without_the_marked_export_a_fresh_layernorm_beta_has_no_parameter(models, tmp_path):
    """The issue's reproducer with `marked_export: never`: ties by value cannot tell the fresh beta
    (zeros) from anything, grappler dropped its add, and the training check refuses (exit 3); with the
    marked export (the default when train.py is written) every variable is a parameter."""
    config = tmp_path / "never.yaml"
    config.write_text(
        json.dumps({"model": str(models / "train_fresh_layernorm.keras"), "marked_export": "never"})
    )
    out = tmp_path / "never"
    proc = run_command("convert", "--config", config, "--training-check", "2", "--out", out)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "layer_normalization/beta" in proc.stdout and "no torch parameter" in proc.stdout
    native = next(s for s in read_report(out)["stages"] if s["name"] == "native")
    assert native["details"]["ties"].startswith("by value: no marked export")
    assert not (out / "marked").exists()

    out = tmp_path / "marked"
    proc = run_command(
        "convert", models / "train_fresh_layernorm.keras", "--training-check", "2", "--out", out
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = json.loads((out / "weights_map.json").read_text())
    assert "layer_normalization/beta" in {r["tf"] for r in rows}
    export = next(s for s in read_report(out)["stages"] if s["name"] == "export")
    assert export["details"]["marked_export"]["status"] == "written"


def test_a_plain_conversion_says_which_variables_model_py_cannot_train(models, tmp_path):
    """Without train.py the marked export is off by default (`auto`): the fresh LayerNormalization's
    beta and gamma are constants in model.py, and the run says so with the setting that ties them;
    with `marked_export: always` model.py has a parameter for each and nothing to warn about."""
    out = tmp_path / "plain"
    proc = run_command("convert", models / "train_fresh_layernorm.keras", "--out", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "model.py has no parameter for 2 trainable Keras variable(s)" in proc.stdout
    assert "`marked_export: always` ties every variable by identity" in proc.stdout
    config = tmp_path / "always.yaml"
    config.write_text(
        json.dumps({"model": str(models / "train_fresh_layernorm.keras"), "marked_export": "always"})
    )
    out = tmp_path / "always"
    proc = run_command("convert", "--config", config, "--out", out)
    assert proc.returncode == 0 and "warning" not in proc.stdout, proc.stdout + proc.stderr
    assert {"layer_normalization/beta", "layer_normalization/gamma"} <= {
        r["tf"] for r in json.loads((out / "weights_map.json").read_text())
    }
