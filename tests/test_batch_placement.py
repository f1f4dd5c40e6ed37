"""How a batch places models by memory and reruns lost ones: the local slots' shared queue, the
memory a model needs (a run's own report, the zoo's `memory`, the estimate), and `--out` as an
fsspec URL. Real batches run in the test process on the session's warm workers."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from cli_runner import wait_for
from test_batch import CNN, LINEAR, batch_here, read_summary, rows, write_zoo

from pipeline.batching import memory
from pipeline.batching.executors import _Board
from pipeline.batching.task import Task


def task(name: str, memory_mb: float) -> Task:
    return Task(name, {"model": f"demo.{name}"}, "zoo", f"/nowhere/{name}", "key", memory_mb=memory_mb)


def test_slots_take_the_first_waiting_model_that_fits_what_the_running_ones_leave():
    board, stop = (
        _Board([task("a", 2000), task("b", 2000), task("c", 500)], budget_mb=3000),
        threading.Event(),
    )
    first, second = board.take(stop), board.take(stop)
    assert (first.id, second.id) == ("a", "c")  # b would take the sum past 3000 MB
    taken = []
    third = threading.Thread(target=lambda: taken.append(board.take(stop)))
    third.start()
    third.join(0.3)
    assert third.is_alive(), "b started beside a although both need more than the budget"
    board.release(first)
    wait_for(lambda: taken)
    assert taken[0].id == "b"
    board.release(second)
    board.release(taken[0])
    assert board.take(stop) is None


def test_a_model_lost_mid_run_is_put_back_first():
    board, stop = _Board([task("a", 100), task("b", 100)], budget_mb=None), threading.Event()
    a = board.take(stop)
    board.release(a)
    board.put_back(a)
    assert board.take(stop).id == "a"


def test_a_model_needing_more_than_the_budget_is_refused_before_it_starts(tmp_path):
    out = tmp_path / "out"
    zoo = write_zoo(tmp_path / "zoo.yaml", LINEAR, CNN[:-1] + ", memory: 3G}")
    done = batch_here(zoo, "--out", out, "--max-memory", "2.5G", "--workers", "1")
    assert done.returncode == 1, done.stdout + done.stderr
    by_id = rows(read_summary(out))
    assert by_id["linear_regression"]["status"] == "pass"
    refused = by_id["cnn"]
    assert (refused["status"], refused["stage"], refused["exit_code"]) == ("error", "placement", 3)
    assert refused["message"] == (
        "needs 3.0 GB (its zoo entry's `memory`), more than --max-memory offers (2.5 GB); not started"
    )
    assert not (out / "cnn").exists()


def test_a_model_s_need_is_its_last_run_s_peak_else_an_estimate_from_its_size(tmp_path):
    out = tmp_path / "out"
    zoo = write_zoo(tmp_path / "zoo.yaml", LINEAR)
    assert memory.need_mb("demo.linear_regression", out / "linear_regression")[1] == "estimated"
    assert batch_here(zoo, "--out", out).returncode == 0
    report = json.loads((out / "linear_regression" / "report.json").read_text())
    peaks = sum(w["peak_rss_mb"] for w in report["workers"].values())
    assert memory.need_mb("demo.linear_regression", out / "linear_regression") == (
        round(peaks, 1),
        "measured",
    )
    # A model file adds to the estimate in proportion to its size.
    small, large = tmp_path / "small.keras", tmp_path / "large.keras"
    small.write_bytes(b"0" * 2**20)
    large.write_bytes(b"0" * 10 * 2**20)
    grown = memory.estimated_mb(str(large)) - memory.estimated_mb(str(small))
    assert grown == pytest.approx(
        9 * (memory.estimated_mb(str(small)) - memory.estimated_mb("demo.x")), rel=1e-3
    )


@pytest.mark.parametrize("text, mb", [("16G", 16384.0), ("800M", 800.0), ("2.5GB", 2560.0), ("300", 300.0)])
def test_memory_sizes_are_read_in_mb(text, mb):
    assert memory.parse_mb(text) == mb


def test_an_out_url_keeps_the_runs_and_the_cache_in_object_storage(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    remote = tmp_path / "bucket"
    url = f"file://{remote}/runs"
    zoo = write_zoo(tmp_path / "zoo.yaml", LINEAR)
    done = batch_here(zoo, "--out", url)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((remote / "runs" / "summary.json").read_text())
    assert summary["out_dir"] == url
    assert rows(summary)["linear_regression"]["out_dir"] == f"{url}/linear_regression"
    for name in ("summary.md", "summary.html", "junit.xml", "linear_regression/model.py"):
        assert (remote / "runs" / name).is_file(), name
    # The driver's staging copy keeps the reports only.
    staged = tmp_path / "cache" / "tf2torch" / "batch-out"
    assert not list(staged.rglob("model.py")) and list(staged.rglob("report.json"))

    # The cache answers from the URL: a record removed there means the model is converted again.
    def rerun_cached() -> bool:
        assert batch_here(zoo, "--out", url).returncode == 0
        return rows(json.loads((remote / "runs" / "summary.json").read_text()))["linear_regression"]["cached"]

    assert rerun_cached() is True
    (remote / "runs" / "linear_regression" / "result.json").unlink()
    assert rerun_cached() is False


def test_an_out_url_of_an_unknown_storage_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    done = batch_here(write_zoo(tmp_path / "zoo.yaml", LINEAR), "--out", "nosuch://bucket/runs")
    assert done.returncode == 2
    assert "--out nosuch://bucket/runs: Protocol not known: nosuch" in done.stderr


def test_a_slot_finds_the_shipped_files_though_the_drivers_paths_do_not_exist_there(tmp_path):
    from pipeline.batching import shipping

    driver = tmp_path / "driver"
    (driver / "saved").mkdir(parents=True)
    (driver / "saved" / "saved_model.pb").write_bytes(b"graph")
    (driver / "layers.py").write_text("LAYERS = 1\n")
    config = {"model": str(driver / "saved"), "custom_objects": [str(driver / "layers.py")]}
    archive = shipping.pack_inputs(Task("m", config, "savedmodel", "/out/m", "key"))
    # Another machine: nothing of the driver's directory is there.
    (driver / "saved" / "saved_model.pb").unlink()
    (driver / "saved").rmdir()
    (driver / "layers.py").unlink()
    moved = shipping.unpack_inputs(
        Task("m", config, "savedmodel", "/out/m", "key"), archive, tmp_path / "slot"
    )
    assert (Path(moved.config["model"]) / "saved_model.pb").read_bytes() == b"graph"
    assert Path(moved.config["custom_objects"][0]).read_text() == "LAYERS = 1\n"
    assert Path(moved.config["model"]).is_relative_to(tmp_path / "slot")
