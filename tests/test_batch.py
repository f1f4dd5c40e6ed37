"""`tf2torch batch`, run for real on configs/zoos/smoke.yaml and small zoos built from it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from cli_runner import REPO, run_command, wait_for, worker_pids

SMOKE = REPO / "configs" / "zoos" / "smoke.yaml"
SMOKE_IDS = {"linear_regression", "cnn", "lstm", "gru", "dynamic_range_tflite", "mobilenet_v3_small"}


def batch_command(*args) -> list[str]:
    return [sys.executable, "-m", "pipeline", "batch", *map(str, args)]


def run_batch(*args, env: dict | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        batch_command(*args),
        cwd=REPO,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def batch_here(*args) -> subprocess.CompletedProcess:
    """The batch command in the test process, its single slot on the session's warm workers: for tests
    of what a batch decides (cache, baseline, prune), not of its processes."""
    return run_command("batch", *args)


def read_summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def rows(summary: dict) -> dict[str, dict]:
    return {row["id"]: row for row in summary["models"]}


def write_zoo(path: Path, *entries: str, extra: str = "") -> Path:
    """A zoo file of the given smoke.yaml entry lines (inline YAML mappings)."""
    path.write_text(extra + "models:\n" + "".join(f"  - {e}\n" for e in entries))
    return path


CNN = "{id: cnn, model: demo.cnn}"
LSTM = "{id: lstm, model: demo.lstm}"
LINEAR = "{id: linear_regression, model: demo.linear_regression}"
MOBILENET = (
    "{id: mobilenet_v3_small, model: keras.applications.MobileNetV3Small, samples: 1, "
    "inputs: [{name: image, shape: [1, 32, 32, 3]}]}"
)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    """The smoke zoo converted once, with two workers; later tests re-run it from the cache."""
    out = tmp_path_factory.mktemp("smoke")
    done = run_batch(SMOKE, "--out", out, "--workers", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def test_smoke_zoo_converts_with_a_summary_per_model(smoke_run):
    summary = read_summary(smoke_run)
    by_id = rows(summary)
    assert set(by_id) == SMOKE_IDS | {"convnext_xlarge"}
    assert {i for i, r in by_id.items() if r["status"] == "pass"} == SMOKE_IDS
    assert by_id["convnext_xlarge"]["status"] == "skipped"
    assert "too large for a smoke test" in by_id["convnext_xlarge"]["message"]
    assert summary["totals"] == {
        "models": 7,
        "passed": 6,
        "failed": 0,
        "skipped": 1,
        "interrupted": 0,
        "cached": 0,
        "regressions": 0,
    }
    for entry_id in SMOKE_IDS:
        row = by_id[entry_id]
        assert {"tf_vs_onnx", "onnx_vs_torch", "tf_vs_torch", "onnx_vs_native"} <= set(row["worst"])
        assert (smoke_run / entry_id / "model.pt").is_file()
        assert (smoke_run / entry_id / "result.json").is_file()
    markdown = (smoke_run / "summary.md").read_text()
    assert "**6 passed, 0 failed**" in markdown
    dashboard = (smoke_run / "summary.html").read_text()
    assert all(f'data-id="{entry_id}"' in dashboard for entry_id in by_id)


def test_junit_file_has_one_case_per_model(smoke_run):
    root = ET.parse(smoke_run / "junit.xml").getroot()
    suite = root.find("testsuite")
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert set(cases) == SMOKE_IDS | {"convnext_xlarge"}
    assert cases["convnext_xlarge"].find("skipped") is not None
    assert all(cases[i].find("failure") is None and cases[i].find("error") is None for i in SMOKE_IDS)
    assert suite.get("tests") == "7" and suite.get("skipped") == "1" and suite.get("failures") == "0"


def tripwire_env(tmp_path: Path) -> dict[str, str]:
    """Importing tensorflow, torch or onnxruntime fails in this environment: proof that a fully cached
    batch never starts a framework."""
    trap = tmp_path / "tripwire"
    for name in ("tensorflow", "torch", "onnxruntime", "keras"):
        (trap / name).mkdir(parents=True)
        (trap / name / "__init__.py").write_text(f"raise ImportError('tripwire: {name} imported')\n")
    return {"PYTHONPATH": f"{trap}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def test_second_run_is_fully_cached_without_starting_a_framework(smoke_run, tmp_path):
    reports = {i: (smoke_run / i / "report.json").stat().st_mtime_ns for i in SMOKE_IDS}
    done = run_batch(SMOKE, "--out", smoke_run, "--workers", "2", env=tripwire_env(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    summary = read_summary(smoke_run)
    assert summary["totals"]["cached"] == 6 and summary["totals"]["passed"] == 6
    assert all(rows(summary)[i]["cached"] for i in SMOKE_IDS)
    assert {i: (smoke_run / i / "report.json").stat().st_mtime_ns for i in SMOKE_IDS} == reports
    assert "6 cached" in done.stdout


def test_a_changed_config_is_converted_again(tmp_path):
    out = tmp_path / "out"
    zoo = write_zoo(tmp_path / "zoo.yaml", LINEAR)
    assert batch_here(zoo, "--out", out).returncode == 0
    write_zoo(tmp_path / "zoo.yaml", LINEAR.replace("}", ", samples: 5}"))
    done = batch_here(zoo, "--out", out)
    assert done.returncode == 0, done.stdout + done.stderr
    assert rows(read_summary(out))["linear_regression"]["cached"] is False
    assert batch_here(zoo, "--out", out, "--force").returncode == 0
    assert rows(read_summary(out))["linear_regression"]["cached"] is False


def test_failure_against_a_passing_baseline_is_a_regression(smoke_run, tmp_path):
    # The same CNN with a tolerance it cannot meet (atol 0, rtol 0) fails where the baseline passed.
    zoo = write_zoo(
        tmp_path / "zoo.yaml",
        "{id: cnn, model: demo.cnn, tolerances: {default: {atol: 0.0, rtol: 0.0}}}",
    )
    out = tmp_path / "out"
    done = batch_here(zoo, "--out", out, "--baseline", smoke_run / "summary.json")
    assert done.returncode == 1, done.stdout + done.stderr
    summary = read_summary(out)
    assert [r["id"] for r in summary["regressions"]] == ["cnn"]
    assert "passed in the baseline, now tolerance_fail" in summary["regressions"][0]["reason"]
    failure = ET.parse(out / "junit.xml").getroot().find("testsuite/testcase/failure")
    assert failure is not None and failure.get("message").startswith("validate:")


def test_the_dashboard_shows_regressions_then_failures_first_in_a_browser(smoke_run, tmp_path):
    # cnn passed in the smoke run and fails now (a regression); gone fails and has no baseline (a
    # failure); linear_regression passes. Two earlier nights give the trend.
    zoo = write_zoo(
        tmp_path / "zoo.yaml",
        LINEAR,
        "{id: gone, model: gone.keras}",
        "{id: cnn, model: demo.cnn, tolerances: {default: {atol: 0.0, rtol: 0.0}}}",
    )
    history = tmp_path / "history"
    for night in ("20261101T000000Z", "20261102T000000Z"):
        (history / night).mkdir(parents=True)
        (history / night / "summary.json").write_text((smoke_run / "summary.json").read_text())
    out = tmp_path / "out"
    done = batch_here(zoo, "--out", out, "--baseline", smoke_run / "summary.json", "--history", history)
    assert done.returncode == 1, done.stdout + done.stderr
    render = REPO / "scripts" / "render_report.sh"
    dom = subprocess.run([render, out / "summary.html"], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr
    # The order Chromium laid the rows out in: the regression, the failure, then the passing model.
    assert re.findall(r'<tr class="[a-z]*" data-id="([^"]+)"', dom.stdout) == [
        "cnn",
        "gone",
        "linear_regression",
    ]
    row = {m.group(1): m.group(0) for m in re.finditer(r'data-id="([^"]+)".*?</tr>', dom.stdout, re.S)}
    assert "TOLERANCE FAIL (REGRESSED)" in row["cnn"] and "passed in the baseline" in row["cnn"]
    assert "ERROR" in row["gone"] and "model not found" in row["gone"]
    # Each converted model links to its report; the trend has a dot per earlier run and this one.
    assert 'href="cnn/report.html"' in row["cnn"] and (out / "cnn" / "report.html").is_file()
    assert row["linear_regression"].count("<circle") == 4
    assert "was pass" in row["cnn"] and "Trend over 3 earlier run(s)" in dom.stdout
    shot = tmp_path / "summary.png"
    done = subprocess.run([render, out / "summary.html", shot], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", done.stderr


def test_prune_deletes_the_model_files_of_passing_models_only(tmp_path):
    failing = "{id: exact_cnn, model: demo.cnn, tolerances: {default: {atol: 0.0, rtol: 0.0}}}"
    zoo = write_zoo(tmp_path / "zoo.yaml", CNN, failing)
    out = tmp_path / "out"
    done = batch_here(zoo, "--out", out, "--workers", "1", "--prune")
    assert done.returncode == 1, done.stdout + done.stderr
    by_id = rows(read_summary(out))
    assert by_id["cnn"]["status"] == "pass" and by_id["exact_cnn"]["status"] == "tolerance_fail"
    model_files = {"model.onnx", "model.pt", "model.safetensors", "model.pt2", "tf_weights.npz"}
    assert set(by_id["cnn"]["pruned"]) == model_files
    kept = {p.name for p in (out / "cnn").iterdir()}
    assert {"report.json", "report.md", "model.py", "inputs.npz", "tf_outputs.npz", "result.json"} <= kept
    assert not kept & model_files
    assert (out / "exact_cnn" / "model.onnx").is_file() and (out / "exact_cnn" / "model.pt").is_file()
    # The pruned model stays cached: its report is all the cache needs.
    again = batch_here(zoo, "--out", out, "--workers", "1", "--prune")
    assert rows(read_summary(out))["cnn"]["cached"] is True, again.stdout + again.stderr


def test_error_growth_past_the_zoo_factor_is_a_regression(smoke_run, tmp_path):
    # dynamic_range_tflite differs from TF by ~3e-3 (justified in smoke.yaml); a baseline that
    # recorded 1e-4 makes that a 30x growth, past the default factor of 10.
    baseline = read_summary(smoke_run)
    for row in baseline["models"]:
        if row["id"] == "dynamic_range_tflite":
            row["worst"]["tf_vs_onnx"] = 1e-4
    (tmp_path / "baseline.json").write_text(json.dumps(baseline))
    done = batch_here(SMOKE, "--out", smoke_run, "--baseline", tmp_path / "baseline.json")
    assert done.returncode == 1, done.stdout + done.stderr
    found = read_summary(smoke_run)["regressions"]
    assert [r["id"] for r in found] == ["dynamic_range_tflite"]
    assert "tf_vs_onnx max|diff| grew from 0.0001" in found[0]["reason"]
    # Against its own summary nothing regressed.
    (tmp_path / "same.json").write_text((smoke_run / "summary.json").read_text())
    assert batch_here(SMOKE, "--out", smoke_run, "--baseline", tmp_path / "same.json").returncode == 0


def start_batch(*args) -> subprocess.Popen:
    return subprocess.Popen(
        batch_command(*args),
        cwd=REPO,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("retries", [0, 1])
def test_a_killed_worker_is_retried_then_fails_its_model_and_the_batch_goes_on(tmp_path, retries):
    out = tmp_path / "out"
    zoo = write_zoo(tmp_path / "zoo.yaml", CNN, MOBILENET, LSTM)
    batch = start_batch(zoo, "--out", out, "--workers", "1", "--retries", retries)
    # MobileNetV3 takes seconds to build and export: kill its TF worker while it does (the run is
    # written in its staging directory until it is published).
    wait_for(lambda: any(out.glob(".mobilenet_v3_small.partial-*/logs/tf-job.json")))
    victims = wait_for(lambda: worker_pids(batch.pid, "tf"))
    os.kill(victims[0], signal.SIGKILL)
    stdout, stderr = batch.communicate(timeout=600)
    by_id = rows(read_summary(out))
    assert by_id["cnn"]["status"] == "pass" and by_id["lstm"]["status"] == "pass"
    killed = by_id["mobilenet_v3_small"]
    if retries:
        # Run again on a fresh worker: it passes, and the row says what happened to the first run.
        assert batch.returncode == 0, stdout + stderr
        assert killed["status"] == "pass" and killed["attempts"] == 2
        assert "killed by SIGKILL" in killed["lost_runs"][0]
        # The log says so as it happens, and the model's line counts the attempts.
        assert re.search(r"mobilenet_v3_small: the tf worker was killed by SIGKILL.*; it runs again", stdout)
        assert re.search(r"mobilenet_v3_small PASS [0-9.]+s \(attempt 2\)", stdout), stdout
        return
    assert batch.returncode == 1, stdout + stderr
    assert killed["status"] == "error"
    assert "killed by SIGKILL" in killed["message"]
    # A crash may not repeat: it is not cached, so the next run converts that model again.
    assert not (out / "mobilenet_v3_small" / "result.json").exists()


def test_a_model_past_its_timeout_fails_and_the_next_gets_a_fresh_worker(tmp_path):
    out = tmp_path / "out"
    zoo = write_zoo(tmp_path / "zoo.yaml", MOBILENET[:-1] + ", timeout: 1}", LINEAR)
    done = run_batch(zoo, "--out", out, "--workers", "1")
    assert done.returncode == 1, done.stdout + done.stderr
    by_id = rows(read_summary(out))
    assert by_id["mobilenet_v3_small"]["status"] == "error"
    assert "timed out after 1 s" in by_id["mobilenet_v3_small"]["message"]
    assert by_id["linear_regression"]["status"] == "pass"
    assert (
        by_id["linear_regression"]["workers"]["tf"]["pid"]
        != by_id["mobilenet_v3_small"]["workers"]["tf"]["pid"]
    )


@pytest.mark.parametrize("ceiling, same_worker", [("", True), ("max_rss_mb: 1\n", False)])
def test_workers_are_reused_across_models_until_past_the_memory_ceiling(tmp_path, ceiling, same_worker):
    out = tmp_path / "out"
    zoo = write_zoo(tmp_path / "zoo.yaml", LINEAR, CNN, extra=ceiling)
    done = run_batch(zoo, "--out", out, "--workers", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    by_id = rows(read_summary(out))
    for group in ("tf", "torch"):
        pids = {by_id[i]["workers"][group]["pid"] for i in ("linear_regression", "cnn")}
        assert (len(pids) == 1) is same_worker, (group, pids)


def test_a_stopped_batch_resumes_without_redoing_finished_models(tmp_path):
    out = tmp_path / "out"
    # MobileNetV3 takes seconds: the batch is still on it when stopped.
    zoo = write_zoo(tmp_path / "zoo.yaml", CNN, MOBILENET, LSTM)
    batch = start_batch(zoo, "--out", out, "--workers", "1")
    wait_for(lambda: (out / "cnn" / "result.json").exists())
    # One batch per output directory: a second one is refused, naming the first.
    second = run_batch(zoo, "--out", out)
    assert second.returncode == 2
    assert f"PID {batch.pid}" in second.stderr
    first_report = (out / "cnn" / "report.json").stat().st_mtime_ns
    batch.send_signal(signal.SIGTERM)
    stdout, stderr = batch.communicate(timeout=120)
    assert batch.returncode == 143, stdout + stderr
    stopped = rows(read_summary(out))
    assert stopped["cnn"]["status"] == "pass"
    assert "interrupted" in {r["status"] for r in stopped.values()}
    assert not worker_pids(batch.pid, "tf") and not worker_pids(batch.pid, "torch")
    assert not list(out.glob(".*.partial-*")), "the interrupted model left its staging directory"

    done = run_batch(zoo, "--out", out, "--workers", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    resumed = rows(read_summary(out))
    assert resumed["cnn"]["cached"] is True
    assert all(r["status"] == "pass" for r in resumed.values())
    assert (out / "cnn" / "report.json").stat().st_mtime_ns == first_report


def test_a_stale_lock_from_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "out"
    out.mkdir()
    (out / ".tf2torch-batch.lock").write_text(
        json.dumps({"pid": dead.pid, "host": os.uname().nodename, "since": "earlier"})
    )
    zoo = write_zoo(tmp_path / "zoo.yaml", LINEAR)
    done = run_batch(zoo, "--out", out)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not (out / ".tf2torch-batch.lock").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing.yaml"], "missing.yaml"),
        ([SMOKE, "--workers", "0"], "expected at least 1"),
        ([SMOKE, "--baseline", "nowhere/summary.json"], "cannot read the baseline"),
        ([SMOKE, "--ray-address", "ray://x:1"], "--ray-address needs --executor ray"),
        ([SMOKE, "--history", "nowhere"], "--history nowhere is not a directory"),
        ([SMOKE, "--retries", "-1"], "expected at least 0"),
        ([SMOKE, "--max-memory", "2x"], "--max-memory '2x': give a size such as 16G"),
        ([SMOKE, "--executor", "ray", "--max-memory", "4G"], "is the local executor's budget"),
        (
            [SMOKE, "--executor", "ray", "--ray-address", "127.0.0.1:1"],
            "no Ray cluster answers at 127.0.0.1:1",
        ),
    ],
)
def test_bad_usage_exits_2_with_a_message(args, message, tmp_path):
    done = run_batch(*args, "--out", tmp_path / "out")
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_nightly_script_keeps_the_last_runs_and_compares_with_the_previous(tmp_path):
    zoo = write_zoo(tmp_path / "zoo.yaml", LINEAR)
    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "NIGHTLY_DIR": str(tmp_path / "nightly"),
        "NIGHTLY_KEEP": "2",
        "TF2TORCH": f"{sys.executable} -m pipeline",
    }
    for _ in range(3):
        done = subprocess.run(
            ["bash", str(REPO / "scripts" / "nightly.sh"), str(zoo)], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout + done.stderr
    history = sorted((tmp_path / "nightly" / "zoo" / "history").iterdir())
    assert len(history) == 2
    latest = json.loads((history[-1] / "summary.json").read_text())
    assert latest["baseline"] == str(history[0] / "summary.json")
    assert latest["totals"]["cached"] == 1  # the night before's conversion is reused
    assert {p.name for p in history[-1].iterdir()} == {"summary.json", "summary.md", "junit.xml"}
    # The dashboard of the last night shows the trend over the nights kept before it.
    dashboard = (tmp_path / "nightly" / "zoo" / "work" / "summary.html").read_text()
    assert "Trend over 2 earlier run(s)" in dashboard


def _started_worker_environment(pool) -> dict[str, str]:
    """The environment a real worker process was started with (read from /proc; then killed)."""
    worker = pool.get("tf")
    raw = Path(f"/proc/{worker.proc.pid}/environ").read_bytes().split(b"\0")
    worker.kill()
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


@pytest.mark.parametrize("user_threads", [None, "3"])
def test_slots_side_by_side_divide_the_cores_between_their_workers(monkeypatch, user_threads):
    """Two torch workers of 2 OpenMP threads each on 2 cores spin in each other's barriers (a 2 s
    training check took 100 s): a slot's workers get its share of the cores, unless the user chose."""
    from pipeline.orchestrator.pool import WorkerPool

    if user_threads is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", user_threads)
    with WorkerPool(threads=1) as pool:
        env = _started_worker_environment(pool)
    assert env["TF_NUM_INTRAOP_THREADS"] == env["MKL_NUM_THREADS"] == "1"
    assert env["OMP_NUM_THREADS"] == (user_threads or "1")
    with WorkerPool() as pool:  # one slot: the frameworks' own defaults
        env = _started_worker_environment(pool)
    assert "TF_NUM_INTRAOP_THREADS" not in env
