"""ONNX external data: a model whose tensors exceed `external_data_threshold_mb` is saved as
model.onnx + model.onnx.data and still converts end to end. CI covers the path on the demo CNN by
lowering the threshold to 0; scripts/bench/large_model.py converts a real 2.7 GB model."""

from __future__ import annotations

import onnx
from cli_runner import read_report, run_command


def test_external_data_path_converts_end_to_end(tmp_path, write_config):
    out = tmp_path / "out"
    done = run_command(
        "convert", "demo.cnn", "--config", write_config("external_data_threshold_mb: 0\n"), "--out", out
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = read_report(out)
    export = next(s for s in report["stages"] if s["name"] == "export")
    assert export["details"]["external_data"] == "model.onnx.data"
    assert all(c["passed"] for s in report["stages"] for c in s["comparisons"])
    assert {s["name"] for s in report["stages"] if s["status"] == "pass"} >= {"validate", "import", "native"}
    graph = onnx.load(str(out / "model.onnx"), load_external_data=False).graph
    external = [t for t in graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    assert external and not any(t.raw_data for t in external)
    # The CNN's 54 k parameters are in the data file, not in model.onnx.
    assert (out / "model.onnx.data").stat().st_size > 200_000 > (out / "model.onnx").stat().st_size


def test_a_run_below_the_threshold_removes_the_old_data_file(tmp_path, write_config):
    out = tmp_path / "out"
    external = write_config("external_data_threshold_mb: 0\n")
    assert run_command("convert", "demo.cnn", "--config", external, "--out", out).returncode == 0
    assert (out / "model.onnx.data").is_file()
    done = run_command("convert", "demo.cnn", "--out", out)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not (out / "model.onnx.data").exists()
    assert onnx.load(str(out / "model.onnx")).graph.initializer
