"""End to end: a real tiny model in each accepted format goes through all four stages."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from cli_runner import read_report, run_command

from pipeline import artifacts

PAIRS = {
    "validate": ["tf_vs_onnx"],
    "import": ["onnx_vs_torch", "tf_vs_torch"],
    "native": ["onnx_vs_native", "tf_vs_native"],
    "torch_export": ["onnx_vs_exported"],
}
FROZEN_CONFIG = "inputs:\n  - name: features:0\noutputs: [probabilities:0]\n"

# model file, config text, expected format, input names in order, output names in order
CASES = {
    "keras": ("two_inputs.keras", None, "keras", ["zeta", "alpha"], ["output_0", "output_1"]),
    "h5": ("legacy.h5", None, "h5", None, ["output_0"]),
    "saved_model": ("affine_savedmodel", None, "saved_model", ["bias", "x"], ["activation", "sum"]),
    "frozen_graph": ("frozen.pb", FROZEN_CONFIG, "frozen_graph", ["features:0"], ["probabilities:0"]),
    "tflite": ("small.tflite", None, "tflite", None, None),
}


@pytest.fixture(scope="module")
def converted(models, tmp_path_factory):
    """Convert every case once; the tests below inspect the results."""
    results = {}
    for case, (name, config_text, *_rest) in CASES.items():
        out = tmp_path_factory.mktemp(case) / "run"
        args = [models / name, "--out", out]
        if config_text:
            config = out.parent / "config.yaml"
            config.write_text(config_text)
            args += ["--config", config]
        results[case] = (run_command("convert", *args), out)
    return results


@pytest.mark.parametrize("case", CASES)
def test_every_stage_passes_and_the_report_says_so(converted, case):
    proc, out = converted[case]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = read_report(out)
    _, _, fmt, input_names, output_names = CASES[case]
    assert report["status"] == "pass" and report["exit_code"] == 0
    assert report["format"] == fmt
    names = ["load", "export", "validate", "import", "native", "torch_export"]
    assert [s["name"] for s in report["stages"]] == names
    assert all(s["status"] == "pass" and s["error"] is None for s in report["stages"])
    # both workers were measured; importing TensorFlow or torch alone takes well over 100 MB
    assert set(report["workers"]) == {"tf", "torch"}
    assert not any("returncode" in w for w in report["workers"].values())  # no worker died
    assert all(w["peak_rss_mb"] > 100 and w["seconds"] > 0 for w in report["workers"].values())
    # plain models convert to torch and onnx2torch classes only, so model.pt loads without tf2torch
    assert report["stages"][3]["details"]["model_pt_needs_tf2torch"] == []
    if input_names:
        assert [i["name"] for i in report["inputs"]] == input_names
    outputs = list(artifacts.load_arrays(out / "tf_outputs.npz"))
    if output_names:
        assert outputs == output_names
    # Every one of these models leaves the batch unknown (TFLite's signature too): model.py and
    # model.pt2 are also compared with TF at a second batch size.
    assert (out / artifacts.INPUTS_SECOND_SHAPE).is_file()
    expected = {
        **PAIRS,
        "native": [*PAIRS["native"], "tf_vs_native_second_shape"],
        "torch_export": [*PAIRS["torch_export"], "tf_vs_exported_second_shape"],
    }
    for stage in report["stages"]:
        rows = stage["comparisons"]
        assert sorted((r["pair"], r["output"]) for r in rows) == sorted(
            (p, o) for p in expected.get(stage["name"], []) for o in outputs
        )
    for stage, pair, ref, cand in [
        ("validate", "tf_vs_onnx", "tf", "onnx"),
        ("import", "onnx_vs_torch", "onnx", "torch"),
        ("import", "tf_vs_torch", "tf", "torch"),
    ]:
        reference = artifacts.load_arrays(out / artifacts.OUTPUTS[ref])
        candidate = artifacts.load_arrays(out / artifacts.OUTPUTS[cand])
        rows = {
            r["output"]: r
            for s in report["stages"]
            if s["name"] == stage
            for r in s["comparisons"]
            if r["pair"] == pair
        }
        for name, row in rows.items():
            diff = np.abs(reference[name].astype(np.float64) - candidate[name].astype(np.float64))
            # the report's numbers are the real differences between the saved outputs
            assert row["max_abs_diff"] == pytest.approx(diff.max(), abs=1e-12)
            assert row["mean_abs_diff"] == pytest.approx(diff.mean(), abs=1e-12)
            assert (
                row["passed"]
                and row["max_abs_diff"] <= row["atol"] + row["rtol"] * np.abs(reference[name]).max()
            )
            assert 0.999 < row["cosine_similarity"] <= 1.0 + 1e-9


@pytest.mark.parametrize("case", CASES)
def test_artifacts_are_complete_and_the_torch_model_reproduces_its_outputs(converted, case):
    proc, out = converted[case]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in (
        "model.onnx",
        "model.pt",
        "inputs.npz",
        "tf_outputs.npz",
        "onnx_outputs.npz",
        "torch_outputs.npz",
        "report.json",
        "report.md",
    ):
        assert (out / name).is_file(), name
    onnx_inputs = [i.name for i in onnx.load(str(out / "model.onnx")).graph.input]
    feeds = artifacts.load_arrays(out / "inputs.npz")
    assert onnx_inputs == list(feeds)  # ONNX graph inputs follow the TF model's input order
    module = torch.load(out / "model.pt", weights_only=False)
    expected = artifacts.load_arrays(out / "torch_outputs.npz")
    with torch.no_grad():
        result = module(*[torch.from_numpy(feeds[n][0]) for n in feeds])  # positional, first sample
    result = result if isinstance(result, (tuple, list)) else (result,)
    for tensor, name in zip(result, expected, strict=True):
        np.testing.assert_allclose(tensor.numpy(), expected[name][0], rtol=1e-6, atol=1e-6)
    markdown = (out / "report.md").read_text()
    assert "**Verdict: PASS**" in markdown and "tf_vs_torch" in markdown


def test_saved_model_reference_outputs_are_the_real_model_outputs(converted):
    """Recompute the tf.Module's maths in numpy from the seed tests/build_models.py used."""
    _, out = converted["saved_model"]
    rng = np.random.default_rng(3)
    w, b = rng.normal(size=(4, 3)).astype("float32"), rng.normal(size=(3,)).astype("float32")
    feeds = artifacts.load_arrays(out / "inputs.npz")
    h = feeds["x"] @ w + b + feeds["bias"]
    tf_outputs = artifacts.load_arrays(out / "tf_outputs.npz")
    np.testing.assert_allclose(tf_outputs["activation"], np.maximum(h, 0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tf_outputs["sum"], h.sum(axis=-1), rtol=1e-5, atol=1e-5)
    assert feeds["x"].shape == (3, 2, 4)  # samples=3 batches of batch_size=2 from the defaults


def test_frozen_graph_reference_outputs_are_the_real_model_outputs(converted):
    _, out = converted["frozen_graph"]
    w = np.random.default_rng(4).normal(size=(6, 2)).astype("float32")
    logits = artifacts.load_arrays(out / "inputs.npz")["features:0"] @ w + 0.5
    expected = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(
        artifacts.load_arrays(out / "tf_outputs.npz")["probabilities:0"], expected, rtol=1e-5
    )


def test_terminal_output_gives_a_verdict_per_stage(converted):
    proc, _ = converted["keras"]
    lines = proc.stdout.splitlines()
    for stage in ("load", "export", "validate", "import"):
        assert any(line.split()[:2] == [stage, "PASS"] for line in lines), proc.stdout
    assert "verdict: PASS (exit 0)" in proc.stdout
    assert proc.stderr == ""  # TensorFlow's log noise goes to logs/, not the user's terminal
