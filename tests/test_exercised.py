"""A PASS means the model was exercised (issue 31): padded rows reach the masks, a masked RNN's model.py
keeps its mask, and the report lists the branches, trip counts and masks the samples took, with a
warning for what no sample reached."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from cli_runner import read_report, run_command

from pipeline import artifacts
from pipeline.compare import compare_arrays
from pipeline.config import ResolvedTolerance
from pipeline.torch_worker.native import driver, recurrent
from pipeline.torch_worker.native.context import PassContext
from pipeline.torch_worker.native_stage import _tf_variables
from pipeline.torch_worker.onnx_stages import to_torch
from pipeline.torch_worker.outputs import run_module, second_shape_inputs

TOLERANCE = ResolvedTolerance(atol=1e-5, rtol=1e-4, max_mismatch=0.0)  # the default of every pair


@pytest.fixture(scope="module")
def masked_run(models, tmp_path_factory):
    """(run directory, report) of the reproducer converted at a batch size, made on first use: token
    ids from the tokenizer's range (1-199), so only the generator's padded rows mask anything."""
    runs: dict[int, tuple] = {}

    def get(batch: int):
        if batch not in runs:
            root = tmp_path_factory.mktemp(f"masked{batch}")
            config = root / "config.yaml"
            config.write_text(f"inputs:\n  - {{name: tokens, shape: [{batch}, 12], range: [1, 200]}}\n")
            out = root / "run"
            proc = run_command("convert", models / "masked_text.keras", "--config", config, "--out", out)
            assert proc.returncode == 0, proc.stdout + proc.stderr
            runs[batch] = (out, read_report(out))
        return runs[batch]

    return get


@pytest.mark.parametrize("batch", [4, 1])
def test_the_masked_lstm_model_py_matches_tf_on_padded_rows(masked_run, batch):
    out, report = masked_run(batch)
    padding = report["inputs"][0]["padding"]
    assert padding["source"] == "Embedding 'embedding' (mask_zero=True)"
    tokens = artifacts.load_arrays(out / artifacts.INPUTS)["tokens"]
    assert (tokens[0] != 0).all()  # the first batch as drawn: the user's range has no padding id
    lengths = padding["lengths"]
    for sample in (1, 2):
        real = (tokens[sample] != 0).sum(axis=1).tolist()
        assert real == lengths[sample] and min(real) < 12
    shortest = {n for sample in lengths[1:] for n in sample}
    assert 1 in shortest and 12 in shortest if batch > 1 else shortest == {1, 6}
    stages = {s["name"]: s for s in report["stages"]}
    compared = {c["pair"]: c for c in stages["native"]["comparisons"] + stages["torch_export"]["comparisons"]}
    assert compared["tf_vs_native"]["passed"] and compared["onnx_vs_exported"]["passed"]
    code = (out / "model.py").read_text()
    assert "class Loop(" not in code and "self.lstm(" in code
    assert ", None, " in code  # model.py's LSTM takes the mask as its third argument
    # The mask the Loop reads was False on the padded rows, True elsewhere: no warning.
    masks = [
        n for n in stages["validate"]["details"]["exercised"]["nodes"] if "mask" in n and n["op"] == "Loop"
    ]
    assert masks and all(n["selected_false"] >= 2 and n["selected_true"] == 4 for n in masks)
    assert report["warnings"] == []


def _through_recurrent_layers(out):
    """The imported module after the native passes up to recurrent_layers, as the native stage builds
    them, with the samples it verifies against."""
    model = onnx.load(str(out / artifacts.ONNX_MODEL))
    gm = to_torch(model)
    names = [i.name for i in model.graph.input]
    feeds = artifacts.load_arrays(out / artifacts.INPUTS)
    samples = [[torch.from_numpy(np.ascontiguousarray(feeds[n][i])) for n in names] for i in range(3)]
    second = [torch.from_numpy(a) for a in second_shape_inputs(out, names)]
    ctx = PassContext(samples[0], second, _tf_variables(out)[0], other_samples=samples[1:])
    last = [name for name, _ in driver.PASSES].index("recurrent_layers")
    for _, func in driver.PASSES[: last + 1]:
        func(gm, ctx)
    return gm, samples, ctx


def _old_matcher(monkeypatch):
    """The rewrite before issue 31: a mask-free reading tried first, matched on the first sample and
    the second input shape only."""
    monkeypatch.setattr(
        recurrent,
        "_mask_readings",
        lambda args, seq, runs: [None, *(a for a in args if recurrent._is_mask(a, seq, runs))],
    )
    monkeypatch.setattr(recurrent, "_recordings", lambda gm, ctx: list(ctx.values(gm)))


def _worst_against_tf(gm, samples, out) -> list[float]:
    (reference,) = artifacts.load_arrays(out / artifacts.OUTPUTS["tf"]).values()
    worst = []
    for i, sample in enumerate(samples):
        (got,) = run_module(gm, sample)
        row = compare_arrays(reference[i], np.asarray(got), TOLERANCE)
        worst.append((row["passed"], row["max_abs_diff"]))
    return worst


def test_the_old_masked_rnn_rewrite_fails_on_the_padded_rows(masked_run, monkeypatch):
    out, _ = masked_run(4)
    gm, samples, ctx = _through_recurrent_layers(out)
    assert ctx.counts["recurrent_layers"] == 1
    assert all(passed for passed, _ in _worst_against_tf(gm, samples, out))

    _old_matcher(monkeypatch)
    old, samples, ctx = _through_recurrent_layers(out)
    assert ctx.counts["recurrent_layers"] == 1  # the old reading matched the unpadded batch...
    worst = _worst_against_tf(old, samples, out)
    assert worst[0][0]  # ... where no step is masked
    assert not worst[1][0] and not worst[2][0] and min(worst[1][1], worst[2][1]) > 1e-3, worst


def test_a_branch_no_sample_takes_is_a_warning_in_the_verdict(models, tmp_path, write_config):
    """tests/build_models.py's tf.cond takes its `then` branch when the inputs sum past 3: inputs
    below 0.1 never do."""
    low = write_config("inputs:\n  - {name: x, shape: [2, 3], range: [0, 0.1]}\n", "low.yaml")
    proc = run_command("convert", models / "branching", "--config", low, "--out", tmp_path / "low")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = read_report(tmp_path / "low")
    (branch,) = [n for n in _exercised(report)["nodes"] if n["op"] == "If"]
    assert (branch["then"], branch["else"], branch["decided_by"]) == (0, 4, "values")
    warning = f"the then branch of If '{branch['node']}' was never exercised (4 runs)"
    assert report["warnings"] == [warning]
    assert report["status"] == "pass"
    assert proc.stdout.splitlines()[-1] == f"  1 warning(s): {warning}"
    markdown = (tmp_path / "low" / "report.md").read_text()
    assert f"## Warnings\n\n- {warning}" in markdown
    assert "| then 0, else 4 |" in markdown

    both = write_config("inputs:\n  - {name: x, shape: [2, 3], range: [0, 1]}\n", "both.yaml")
    proc = run_command("convert", models / "branching", "--config", both, "--out", tmp_path / "both")
    report = read_report(tmp_path / "both")
    sums = artifacts.load_arrays(tmp_path / "both" / artifacts.INPUTS)["x"].sum(axis=(1, 2))
    second = artifacts.load_arrays(tmp_path / "both" / artifacts.INPUTS_SECOND_SHAPE)["x"].sum()
    taken = int((sums > 3).sum()) + int(second > 3)
    (branch,) = [n for n in _exercised(report)["nodes"] if n["op"] == "If"]
    assert (branch["then"], branch["else"]) == (taken, 4 - taken)
    assert 0 < taken < 4 and report["warnings"] == []


def _exercised(report: dict) -> dict:
    return next(s for s in report["stages"] if s["name"] == "validate")["details"]["exercised"]
