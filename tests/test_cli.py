"""The command line's verdicts and exit codes on real models: tolerance failures, bad input, unsupported ops."""

from __future__ import annotations

import json
import os
import pickletools
import signal
import subprocess
import sys
import time
import zipfile

import pytest
from cli_runner import REPO, alive, default_signals, read_report, run_cli, run_command, worker_pids


def _stage(report: dict, name: str) -> dict:
    return next(s for s in report["stages"] if s["name"] == name)


def test_too_tight_tolerance_exits_1_and_names_the_output_and_pair(models, tmp_path, write_config):
    config = write_config("tolerances:\n  tf_vs_onnx: {atol: 0.0, rtol: 0.0}\n")
    out = tmp_path / "run"
    proc = run_command("convert", models / "two_inputs.keras", "--config", config, "--out", out)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    report = read_report(out)
    assert report["status"] == "tolerance_fail" and report["exit_code"] == 1
    validate = _stage(report, "validate")
    assert validate["status"] == "tolerance_fail"
    failing = [c for c in validate["comparisons"] if not c["passed"]]
    assert failing, validate
    for row in validate["comparisons"]:
        # with atol = rtol = 0 exactly the outputs that differ at all must fail
        assert row["passed"] == (row["max_abs_diff"] == 0.0)
        assert (row["atol"], row["rtol"]) == (0.0, 0.0)
    for row in failing:
        assert row["pair"] == "tf_vs_onnx" and f"tf_vs_onnx '{row['output']}'" in validate["error"]
    # the later stage still ran with the default tolerances and passed
    assert _stage(report, "import")["status"] == "pass"
    assert "TOLERANCE FAIL" in proc.stdout and "verdict: TOLERANCE FAIL (exit 1)" in proc.stdout


def test_frozen_graph_without_input_names_exits_2_listing_placeholders(models, tmp_path):
    out = tmp_path / "run"
    proc = run_command("convert", models / "frozen.pb", "--out", out)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "features:0  float32  [?, 6]" in proc.stderr
    assert "Likely outputs: probabilities:0" in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    # What the config must say is the user's to add: refused like a bad config, nothing published.
    assert not out.exists()


def test_frozen_graph_with_a_wrong_input_name_exits_2(models, tmp_path, write_config):
    config = write_config("inputs:\n  - name: feature:0\noutputs: [probabilities:0]\n")
    proc = run_command("convert", models / "frozen.pb", "--config", config, "--out", tmp_path / "run")
    assert proc.returncode == 2
    assert "input 'feature:0' is not a placeholder" in proc.stderr and "features:0" in proc.stderr


def test_tf_ops_tf2onnx_cannot_convert_are_all_listed_with_counts(models, tmp_path):
    out = tmp_path / "run"
    proc = run_command("convert", models / "tf_unsupported", "--out", out)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "tf2onnx cannot convert 3 node(s) in stage 'export': Digamma x1, Lgamma x2" in proc.stdout
    report = read_report(out)
    assert [(s["name"], s["status"]) for s in report["stages"]] == [
        ("load", "pass"),
        ("export", "error"),
        ("validate", "skipped"),
        ("import", "skipped"),
        ("native", "skipped"),
        ("torch_export", "skipped"),
    ]
    assert not (out / "model.onnx").exists()  # no half-valid artifact left behind


def test_onnx_ops_onnx2torch_cannot_convert_are_named_with_the_stage(models, tmp_path):
    out = tmp_path / "run"
    proc = run_command("convert", models / "torch_unsupported", "--out", out)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert (
        "onnx2torch cannot convert 1 node(s) in stage 'import': RandomUniformLike (opset 17) x1"
        in proc.stdout
    )
    report = read_report(out)
    assert _stage(report, "validate")["status"] == "pass"
    assert _stage(report, "import")["status"] == "error" and report["exit_code"] == 3
    assert not (out / "model.pt").exists()


def test_config_typo_exits_2_naming_the_key_before_any_work(models, tmp_path, write_config):
    config = write_config("samples: 2\ntolerances:\n  tf_vs_onx: {atol: 1.0e-4}\n")
    out = tmp_path / "run"
    proc = run_command("convert", models / "legacy.h5", "--config", config, "--out", out)
    assert proc.returncode == 2
    assert "unknown key 'tolerances.tf_vs_onx' (did you mean 'tf_vs_onnx'?)" in proc.stderr
    assert str(config) in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("make_model", "message"),
    [
        (lambda d: d / "missing.keras", "model not found"),
        (lambda d: d, "is a directory but not a SavedModel"),
        (lambda d: _write(d / "empty.keras", b""), "is an empty file"),
        (lambda d: _write(d / "fake.tflite", b"hello there"), "does not look like a tflite file"),
        (lambda d: _write(d / "model.onnx", b"x"), "cannot tell the format"),
    ],
)
def test_bad_model_paths_exit_2_with_one_line(tmp_path, make_model, message):
    proc = run_command("convert", make_model(tmp_path), "--out", tmp_path / "run")
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_unknown_signature_lists_the_available_ones(models, tmp_path):
    proc = run_command("convert", models / "affine_savedmodel", "--out", tmp_path / "run")
    assert proc.returncode == 0
    cfg = tmp_path / "c.yaml"
    cfg.write_text("signature: predict\n")
    proc = run_command("convert", models / "affine_savedmodel", "--config", cfg, "--out", tmp_path / "run2")
    assert proc.returncode == 2
    assert "has no signature 'predict'; it has: serving_default" in proc.stderr


def test_h5_without_tf_keras_says_how_to_install_it(models, tmp_path, monkeypatch):
    # Shadow tf_keras with a package that fails to import, as on a machine without it.
    blocker = tmp_path / "block" / "tf_keras"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('No module named tf_keras')\n")
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(blocker.parent), os.environ.get("PYTHONPATH")]))
    )
    proc = run_cli("convert", models / "legacy.h5", "--out", tmp_path / "run")
    assert proc.returncode == 2
    assert "pip install --no-deps tf-keras==2.21.0" in proc.stdout


def test_no_command_is_a_usage_error():
    proc = run_cli()
    assert proc.returncode == 2 and "usage: tf2torch" in proc.stderr


def test_default_convert_runs_the_three_porting_guide_models(tmp_path):
    proc = run_command("convert", "--out", tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("demo.linear_regression", "demo.cnn", "demo.lstm"):
        report = read_report(tmp_path / name)
        assert report["status"] == "pass", (name, report["stages"])
        assert report["format"] == "zoo"
    cnn_inputs = read_report(tmp_path / "demo.cnn")["inputs"]
    assert cnn_inputs == [
        {
            "name": "image",
            "dtype": "float32",
            "shape": [2, 28, 28, 1],
            "low": 0.0,
            "high": 1.0,
            "padding": None,
        }
    ]
    # model.pt must load without this package: only torch and onnx2torch classes may be pickled in it
    with zipfile.ZipFile(tmp_path / "demo.lstm" / "model.pt") as archive:
        pickled = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
    modules = {arg.split(" ")[0] for op, arg, _ in pickletools.genops(pickled) if op.name == "GLOBAL"}
    modules |= {
        arg
        for op, arg, _ in pickletools.genops(pickled)
        if op.name in ("SHORT_BINUNICODE", "BINUNICODE")
        and isinstance(arg, str)
        and arg.startswith("pipeline")
    }
    assert not any(m.startswith("pipeline") for m in modules), modules


def test_a_worker_past_its_timeout_becomes_a_failed_stage_and_is_killed(models, tmp_path, write_config):
    config = write_config("timeout: 0.5\n")  # less than a fresh worker takes to import TensorFlow
    out = tmp_path / "run"
    proc = run_cli("convert", models / "legacy.h5", "--config", config, "--out", out)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "timed out after 0.5 s" in proc.stdout and "Traceback" not in proc.stdout + proc.stderr
    report = read_report(out)
    assert [s["status"] for s in report["stages"]] == ["error"] + ["skipped"] * 5
    assert "skipped" in proc.stdout  # the terminal says so too, rather than staying silent
    assert not alive(report["workers"]["tf"]["pid"])  # killed, not left running


def test_opset_flag_reaches_the_exported_model(models, tmp_path):
    import onnx

    out = tmp_path / "run"
    proc = run_command("convert", models / "affine_savedmodel", "--opset", "13", "--out", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert read_report(out)["config"]["opset"] == 13
    opsets = {o.domain: o.version for o in onnx.load(str(out / "model.onnx")).opset_import}
    assert opsets[""] == 13
    proc = run_command("convert", models / "affine_savedmodel", "--opset", "30", "--out", tmp_path / "bad")
    assert proc.returncode == 2 and "command line: key 'opset'" in proc.stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stopping_the_command_stops_its_worker(models, tmp_path, signum):
    out = tmp_path / "run"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "convert", str(models / "two_inputs.keras"), "--out", str(out)],
        # A job started in the background inherits SIGINT ignored, and so would the command; a terminal's
        # Ctrl-C is what this test stands for, so give the command default signal handling.
        preexec_fn=default_signals,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not worker_pids(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    workers = worker_pids(proc.pid)
    assert workers, "the worker never started"
    # Let the worker get into its TensorFlow import (about 2 s): a worker stopped earlier dies of a
    # broken pipe at its first report anyway, which would hide a missing cleanup.
    time.sleep(1.0)
    proc.send_signal(signum)
    proc.wait(timeout=30)
    assert proc.returncode != 0
    time.sleep(0.3)
    left = [pid for pid in workers if alive(pid)]
    assert left == [], f"worker(s) {left} left running after {signum.name}"


def test_ops_lists_tf_and_onnx_ops_with_their_status():
    proc = run_command("ops", "fft")
    assert proc.returncode == 0, proc.stderr
    assert "tf.signal.rfft2d" in proc.stdout and "supported" in proc.stdout
    proc = run_command("ops", "lgamma")
    assert proc.returncode == 0 and "fails" in proc.stdout and "ONNX has no log-gamma" in proc.stdout
    proc = run_command("ops", "Resize", "--json")
    rows = json.loads(proc.stdout)["onnx_ops"]
    assert [r["op"] for r in rows] == ["Resize"] and rows[0]["opsets"]["17"]["passed"] > 10
    proc = run_command("ops", "no-such-op")
    assert proc.returncode == 1 and "no TF or ONNX op matches" in proc.stdout
