"""Bad input, faults and untrusted models: each gets its exit code and a message that says what is
wrong and what to do; nothing half-written is left, nothing passing is overwritten, and nothing from
a model file runs unless trusted. The table of docs/bad-inputs.md lists these cases (and the
other tests that cover the rest); test_readme_bad_input_table checks each row names a real test."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_runner import REPO, alive, default_signals, read_report, run_cli, run_command, wait_for

TIGHT = "tolerances:\n  default: {atol: 0.0, rtol: 0.0}\nlocalize: never\n"


def _truncate(source: Path, target: Path, fraction: float) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * fraction)])
    return target


def _corrupt_saved_model(models: Path, target: Path) -> Path:
    shutil.copytree(models / "affine_savedmodel", target)
    graph = target / "saved_model.pb"
    graph.write_bytes(graph.read_bytes()[:100])
    return target


def _saved_model_without_variables(models: Path, target: Path) -> Path:
    shutil.copytree(models / "affine_savedmodel", target)
    shutil.rmtree(target / "variables")
    return target


@pytest.mark.parametrize(
    ("make_model", "message"),
    [
        (
            lambda m, d: _truncate(m / "two_inputs.keras", d / "cut.keras", 0.5),
            "is not a complete .keras archive",
        ),
        (lambda m, d: _truncate(m / "legacy.h5", d / "cut.h5", 0.5), "is not a readable HDF5 file"),
        (lambda m, d: _truncate(m / "frozen.pb", d / "cut.pb", 0.3), "is not a readable frozen GraphDef"),
        # TFLite's C++ interpreter crashes (SIGSEGV) on this file; it must be caught before.
        (
            lambda m, d: _truncate(m / "small.tflite", d / "cut.tflite", 0.3),
            "is not a complete .tflite model",
        ),
        (lambda m, d: _corrupt_saved_model(m, d / "sm"), "TensorFlow could not load the SavedModel"),
        (lambda m, d: _saved_model_without_variables(m, d / "sm"), "Failed to find any matching files"),
    ],
    ids=["keras", "h5", "frozen_graph", "tflite", "saved_model_graph", "saved_model_variables"],
)
def test_truncated_or_corrupt_model_files_exit_2_naming_the_file(models, tmp_path, make_model, message):
    model = make_model(models, tmp_path)
    proc = run_command("convert", model, "--out", tmp_path / "run")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stdout and str(model) in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    assert read_report(tmp_path / "run")["stages"][0]["status"] == "error"


@pytest.mark.parametrize(
    ("source", "name", "message"),
    [
        ("legacy.h5", "model.keras", "named as a keras file but its content is a h5 file: rename it to .h5"),
        ("two_inputs.keras", "model.pb", "its content is a keras file: rename it to .keras"),
        ("small.tflite", "model.h5", "its content is a tflite file"),
    ],
)
def test_an_extension_that_lies_is_named_before_any_work(models, tmp_path, source, name, message):
    shutil.copy(models / source, tmp_path / name)
    proc = run_command("convert", tmp_path / name, "--out", tmp_path / "run")
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_an_input_shape_that_does_not_fit_the_model_exits_2(models, write_config, tmp_path):
    config = write_config("inputs:\n  - {name: zeta, shape: [2, 9]}\n")
    proc = run_command("convert", models / "two_inputs.keras", "--config", config, "--out", tmp_path / "run")
    assert proc.returncode == 2
    assert "config shape [2, 9] for input 'zeta' does not fit the model's shape [?, 6]" in proc.stderr
    assert "(`inputs[0].shape`); write e.g. `shape: [2, 6]`" in proc.stderr
    assert not (tmp_path / "run").exists()  # refused like a bad config file: nothing published


def test_nan_and_inf_in_tf_outputs_fail_instead_of_passing(models, write_config, tmp_path):
    proc = run_command("convert", models / "nan_outputs.keras", "--out", tmp_path / "run")
    assert proc.returncode == 2, proc.stdout
    assert "TF's outputs on the seeded inputs are not finite" in proc.stdout
    assert re.search(r"\d+ NaN, \d+ Inf of \d+ values", proc.stdout)
    assert "RuntimeWarning" not in proc.stderr
    # Allowed explicitly, NaN and Inf must then sit at the same places on every side.
    config = write_config("allow_nonfinite: true\n")
    proc = run_command("convert", models / "nan_outputs.keras", "--config", config, "--out", tmp_path / "ok")
    assert proc.returncode == 0, proc.stdout
    validate = next(s for s in read_report(tmp_path / "ok")["stages"] if s["name"] == "validate")
    assert validate["comparisons"][0]["nonfinite_reference"] > 0


# --- untrusted models -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["lambda.keras", "lambda.h5"])
def test_lambda_layers_are_refused_unless_the_model_is_trusted(models, tmp_path, name):
    # A Lambda layer's stored code writes this file if it runs: the refusal must come first.
    proc = run_command("convert", models / name, "--out", tmp_path / "run")
    assert proc.returncode == 2, proc.stdout
    assert "has a Lambda layer, whose Python code would run when the model is loaded" in proc.stdout
    assert "pass --trust-model" in proc.stdout
    proc = run_command("convert", models / name, "--trust-model", "--out", tmp_path / "trusted")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert read_report(tmp_path / "trusted")["config"]["trust_model"] is True


def test_lambda_code_in_an_h5_file_does_not_run_without_trust(models, tmp_path):
    """tf_keras runs an .h5 Lambda's marshalled bytecode while loading: it must never be reached."""
    planted = tmp_path / "planted.h5"
    marker = tmp_path / "code_ran"
    script = (
        "import os, sys\n"
        "os.environ['TF_CPP_MIN_LOG_LEVEL'] = '3'\n"
        "import tf_keras\n"
        "marker = sys.argv[2]\n"
        "def touch(x):\n"
        "    open(marker, 'w').close()\n"
        "    return x\n"
        "model = tf_keras.Sequential([tf_keras.layers.Dense(2, input_shape=(3,)), tf_keras.layers.Lambda(touch)])\n"
        "model.save(sys.argv[1])\n"
    )
    subprocess.run([sys.executable, "-c", script, str(planted), str(marker)], check=True, capture_output=True)
    marker.unlink(missing_ok=True)  # saving traced the function once
    proc = run_command("convert", planted, "--out", tmp_path / "run")
    assert proc.returncode == 2 and "Lambda layer" in proc.stdout
    assert not marker.exists(), "the model file's code ran"


def test_custom_layer_classes_come_from_the_users_file(models, write_config, tmp_path):
    proc = run_command("convert", models / "custom_layer.keras", "--out", tmp_path / "run")
    assert proc.returncode == 2
    assert "uses the custom class 'Scale', whose code is not in the file" in proc.stdout
    assert "custom_objects: [my_layers.py]" in proc.stdout
    (tmp_path / "my_layers.py").write_text(
        "import keras\n\n\n@keras.saving.register_keras_serializable(package='tests')\n"
        "class Scale(keras.layers.Layer):\n    def call(self, x):\n        return x * 3.0\n"
    )
    config = write_config("custom_objects: [my_layers.py]\n")
    proc = run_command("convert", models / "custom_layer.keras", "--config", config, "--out", tmp_path / "ok")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_configs_are_read_with_a_safe_yaml_loader(models, write_config, tmp_path):
    marker = tmp_path / "yaml_ran"
    config = write_config(f"samples: !!python/object/apply:os.system ['touch {marker}']\n")
    proc = run_command("convert", models / "legacy.h5", "--config", config, "--out", tmp_path / "run")
    assert proc.returncode == 2 and "not valid YAML" in proc.stderr
    assert not marker.exists()


def test_the_torch_worker_never_unpickles_code(models, write_config, tmp_path):
    """Every torch.load in the worker is weights-only, even one that asks for more (torch.export.load
    asks for more on some tensors): a pickle that would run code is refused."""
    marker = tmp_path / "pickle_ran"
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import os, torch\n"
        "class Payload:\n"
        "    def __reduce__(self):\n"
        f"        return (os.system, ('touch {marker}',))\n"
        f"torch.save({{'x': Payload()}}, {str(tmp_path / 'evil.pt')!r})\n"
        f"torch.load({str(tmp_path / 'evil.pt')!r}, weights_only=False)\n"
    )
    config = write_config(f"converters: [{probe}]\n")
    proc = run_command("convert", models / "legacy.h5", "--config", config, "--out", tmp_path / "run")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "UnpicklingError: Weights only load failed" in proc.stderr  # a converters file that fails
    assert not marker.exists(), "the pickle's code ran"


# --- nothing lost -----------------------------------------------------------------------------------


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".partial-" in p.name or p.name.endswith(".lock"))


def test_a_failed_run_never_replaces_a_passing_one(write_config, tmp_path):
    # demo.cnn: its softmax (exp in TF's, onnxruntime's and torch's own kernels) is never bit-exact
    # everywhere, so zero tolerances fail it; legacy.h5 (a small MLP) came out bit-exact in every pair
    # with the packages of 2026-12-06 (onnxruntime 1.32, tensorflow 2.21): its zero-tolerance run passed.
    out = tmp_path / "run"
    assert run_command("convert", "demo.cnn", "--out", out).returncode == 0
    good = (out / "report.json").read_bytes()
    proc = run_command("convert", "demo.cnn", "--config", write_config(TIGHT), "--out", out)
    assert proc.returncode == 1
    assert f"the passing run in {out} is kept" in proc.stdout
    assert (out / "report.json").read_bytes() == good
    failed = read_report(tmp_path / "run.failed")
    assert failed["status"] == "tolerance_fail" and failed["out_dir"] == str(tmp_path / "run.failed")
    # A passing run replaces the passing one and clears the failure kept beside it.
    assert run_command("convert", "demo.cnn", "--out", out).returncode == 0
    assert (out / "report.json").read_bytes() != good
    assert not (tmp_path / "run.failed").exists()
    assert _leftovers(tmp_path) == []


def test_an_interrupted_run_leaves_the_previous_result_and_no_partial_files(models, tmp_path):
    out = tmp_path / "run"
    assert run_cli("convert", models / "legacy.h5", "--out", out).returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    proc = _start_convert(models / "two_inputs.keras", out)
    wait_for(lambda: any(".partial-" in p.name for p in tmp_path.iterdir()), timeout=60)
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    assert proc.returncode == 130
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert _leftovers(tmp_path) == []


def test_two_converts_into_one_directory_do_not_interleave(models, tmp_path):
    out = tmp_path / "run"
    first = _start_convert(models / "two_inputs.keras", out)
    wait_for(lambda: (tmp_path / ".run.lock").exists(), timeout=60)
    second = run_cli("convert", models / "legacy.h5", "--out", out)
    assert second.returncode == 2
    assert f"another tf2torch convert (PID {first.pid}" in second.stderr
    assert "is writing to" in second.stderr and "use another --out" in second.stderr
    assert first.wait(timeout=300) == 0
    assert read_report(out)["model"].endswith("two_inputs.keras")
    assert _leftovers(tmp_path) == []


def test_a_directory_that_holds_no_run_is_not_replaced(models, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    proc = run_command("convert", models / "legacy.h5", "--out", out)
    assert proc.returncode == 2
    assert "is not empty and holds no earlier run" in proc.stderr
    assert (out / "notes.txt").read_text() == "keep me"


def test_a_stale_staging_directory_of_a_killed_run_is_removed(models, tmp_path):
    stale = tmp_path / ".run.partial-999999"
    (stale / "logs").mkdir(parents=True)
    (stale / "model.onnx").write_bytes(b"half")
    assert run_command("convert", models / "legacy.h5", "--out", tmp_path / "run").returncode == 0
    assert _leftovers(tmp_path) == []


# --- the file system says no -------------------------------------------------------------------------


def _in_own_mount(tmp_path: Path, options: str, *args) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run the command with a tmpfs mounted (`options`) at tmp_path/mnt, in a private mount namespace
    (unshare -rm: no privileges needed where user namespaces are allowed). Returns the command's
    result and what it left in the mount (the mount ends with the namespace)."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare (util-linux) to mount a small or read-only file system")
    mount = tmp_path / "mnt"
    mount.mkdir()
    probe = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "mount", "-t", "tmpfs", "tmpfs", str(mount)],
        capture_output=True,
    )
    if probe.returncode != 0:
        pytest.skip(f"this machine does not allow a private mount: {probe.stderr.decode().strip()}")
    script = (
        'mount -t tmpfs -o "$1" tmpfs "$2" || exit 99; dir="$2"; shift 2; "$@"; rc=$?; '
        'echo "@@left:"; ls -A "$dir"; exit $rc'
    )
    proc = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, "sh", options, str(mount)]
        + [sys.executable, "-m", "pipeline", *map(str, args)],
        cwd=REPO,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    stdout, _, left = proc.stdout.partition("@@left:\n")
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, proc.stderr), left.split()


def test_an_output_directory_that_is_not_writable_exits_2(models, tmp_path):
    out = tmp_path / "mnt" / "run"
    proc, left = _in_own_mount(tmp_path, "ro", "convert", models / "legacy.h5", "--out", out)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"cannot write to {out}: Read-only file system" in proc.stderr
    assert "Traceback" not in proc.stderr and left == []


@pytest.mark.parametrize("size_kb", [24, 48, 160])
def test_a_disk_that_fills_up_mid_run_exits_2_and_publishes_nothing(models, tmp_path, size_kb):
    # The run fills the disk at a different step for each size: in a worker (its artifacts) or in
    # the command itself (the report, about 180 KiB with its plots).
    out = tmp_path / "mnt" / "run"
    proc, left = _in_own_mount(
        tmp_path, f"size={size_kb}k", "convert", models / "two_inputs.keras", "--out", out
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "No space left on device" in proc.stdout + proc.stderr
    assert "choose another --out" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert left == [], "a failed run left files behind"


# --- faults -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("signum", "hint"),
    [(signal.SIGSEGV, ""), (signal.SIGKILL, "usually means the machine ran out of memory")],
)
def test_a_worker_killed_by_a_signal_is_reported_with_it(models, write_config, tmp_path, signum, hint):
    # A converters file runs in the torch worker: this one kills it as a crash or the OOM killer would.
    killer = tmp_path / "killer.py"
    killer.write_text(f"import os\nos.kill(os.getpid(), {int(signum)})\n")
    config = write_config(f"converters: [{killer}]\n")
    proc = run_command("convert", models / "legacy.h5", "--config", config, "--out", tmp_path / "run")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert f"the torch worker was killed by {signum.name} (see logs/torch.log" in proc.stdout
    assert hint in proc.stdout
    assert read_report(tmp_path / "run")["status"] == "error"


def test_a_stage_past_its_own_timeout_is_killed_and_named(models, write_config, tmp_path):
    config = write_config("stage_timeouts: {export: 0.05}\n")  # far less than an export takes
    out = tmp_path / "run"
    proc = run_command("convert", models / "legacy.h5", "--config", config, "--out", out)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "timed out after 0.05 s in stage export (raise `stage_timeouts.export`" in proc.stdout
    report = read_report(out)
    assert [s["status"] for s in report["stages"]][:2] == ["pass", "error"]  # load finished, export did not
    assert not alive(report["workers"]["tf"]["pid"])
    # A stage name that does not exist is a config error, with the closest one suggested.
    proc = run_command(
        "convert", models / "legacy.h5", "--config", write_config("stage_timeouts: {exprt: 5}\n")
    )
    assert proc.returncode == 2 and "unknown stage 'exprt' (did you mean 'export'?)" in proc.stderr


def test_debug_shows_the_traceback_that_is_otherwise_hidden(tmp_path):
    plain = run_command("convert", tmp_path / "missing.keras", "--out", tmp_path / "run")
    debug = run_command("convert", tmp_path / "missing.keras", "--out", tmp_path / "run", "--debug")
    assert plain.returncode == debug.returncode == 2
    assert "Traceback" not in plain.stderr and "Traceback" in debug.stderr
    assert "model not found" in debug.stderr


# --- the docs table -----------------------------------------------------------------------------------


def test_the_bad_input_table_names_a_test_for_every_row():
    section = (REPO / "docs" / "bad-inputs.md").read_text()
    rows = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) >= 25
    sources = {p.name: p.read_text() for p in (REPO / "tests").glob("test_*.py")}
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        exit_code, test = cells[1], cells[3].strip("`")
        assert re.fullmatch(r"\d+(/\d+)?", exit_code), row
        file, _, name = test.partition("::")
        assert re.search(rf"^def {re.escape(name)}\(", sources.get(file, ""), re.M), f"no test {test}: {row}"


def _start_convert(model: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", "convert", str(model), "--out", str(out)],
        preexec_fn=default_signals,
        cwd=REPO,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_graph_tf2onnx_wrote_wrongly_is_blamed_on_the_tf_op_behind_the_broken_node(tmp_path):
    """tf2onnx's own ExtractImagePatches handler (replaced in this project) writes a Reshape to -3 for
    an unknown batch; validate must name the TF op whose conversion wrote that node."""
    from pipeline.config import ModelConfig
    from pipeline.errors import ConversionError
    from pipeline.torch_worker import onnx_stages as torch_stages

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO))
    script = REPO / "tests" / "upstream_patches_export.py"
    subprocess.run(
        [sys.executable, str(script), str(tmp_path)], check=True, env=env, capture_output=True, timeout=300
    )
    with pytest.raises(ConversionError) as caught:
        torch_stages.validate(ModelConfig(model=str(tmp_path / "model")), "saved_model", tmp_path, {})
    message = str(caught.value)
    assert "ONNX shape inference failed on model.onnx" in message
    assert "written by tf2onnx when converting the TF op ExtractImagePatches (" in message
    assert "Traceback" not in message
