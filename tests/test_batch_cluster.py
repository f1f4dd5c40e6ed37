"""`tf2torch batch --executor ray` on real multi-node Ray clusters (ray.cluster_utils.Cluster: one
machine, several raylets of one CPU each). Each node's slots get their own TMPDIR, so a node's
scratch directories are its own, as on separate machines: the driver's --out is never written by a
slot. A node is removed while a model converts on it; nodes offer different memory."""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import pytest
from cli_runner import wait_for
from test_batch import (
    CNN,
    LINEAR,
    LSTM,
    MOBILENET,
    SMOKE,
    read_summary,
    rows,
    run_batch,
    start_batch,
    write_zoo,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is an optional extra"),
]
GB = 2**30
SUMMARY_FILES = ("summary.json", "summary.md", "summary.html", "junit.xml")


class LocalCluster:
    """A head node without CPUs (the driver's) and worker nodes of one CPU, each with its own TMPDIR."""

    def __init__(self, root: Path, memory_gb: dict[str, float]):
        from ray.cluster_utils import Cluster

        self.cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
        self.nodes, self.tmp = {}, {}
        for name, gb in memory_gb.items():
            self.tmp[name] = root / f"node-{name}"
            self.tmp[name].mkdir(parents=True)
            self.nodes[name] = self.cluster.add_node(
                num_cpus=1, memory=int(gb * GB), env_vars={"TMPDIR": str(self.tmp[name])}
            )
        self.cluster.wait_for_nodes()
        self.address = self.cluster.address

    def node_of(self, node_id: str) -> str:
        return next(name for name, node in self.nodes.items() if node.node_id == node_id)

    def converting_on(self, name: str) -> list[Path]:
        """The models a node's slot is converting now: their jobs in its scratch directories."""
        return list(self.tmp[name].glob("tf2torch-*/runs/.*partial*/logs/tf-job.json"))

    def remove(self, name: str) -> None:
        self.cluster.remove_node(self.nodes[name])

    def shutdown(self) -> None:
        self.cluster.shutdown()


@pytest.fixture
def cluster_of(tmp_path):
    made = []

    def make(**memory_gb: float) -> LocalCluster:
        made.append(LocalCluster(tmp_path / "cluster", memory_gb))
        return made[-1]

    yield make
    for cluster in made:
        cluster.shutdown()


def ray_batch(cluster: LocalCluster, *args) -> list[str]:
    return [*args, "--executor", "ray", "--ray-address", cluster.address]


@pytest.mark.parametrize("retries, lost_model_passes", [(0, False), (1, True)])
def test_a_node_lost_mid_batch_still_writes_every_summary(cluster_of, tmp_path, retries, lost_model_passes):
    cluster = cluster_of(a=6, b=6, c=6)
    out = tmp_path / "out"
    zoo = write_zoo(tmp_path / "zoo.yaml", MOBILENET, CNN, LSTM, LINEAR)
    batch = start_batch(*ray_batch(cluster, zoo, "--out", out, "--workers", "2", "--retries", str(retries)))
    # The first two models start on two of the three nodes: remove one while it converts.
    victim_job = wait_for(lambda: next(iter(cluster.converting_on("b") or cluster.converting_on("a")), None))
    victim = "b" if victim_job.is_relative_to(cluster.tmp["b"]) else "a"
    lost_id = victim_job.parts[-3].split(".partial")[0].lstrip(".")
    time.sleep(1)
    cluster.remove(victim)
    stdout, stderr = batch.communicate(timeout=600)
    assert "Traceback" not in stderr, stderr
    assert batch.returncode == (0 if lost_model_passes else 1), stdout + stderr
    for name in SUMMARY_FILES:
        assert (out / name).is_file(), name
    by_id = rows(read_summary(out))
    assert set(by_id) == {"mobilenet_v3_small", "cnn", "lstm", "linear_regression"}
    lost = by_id[lost_id]
    if lost_model_passes:
        assert lost["status"] == "pass" and lost["attempts"] == 2
        assert lost["lost_runs"][0].startswith("node lost during ")
        assert cluster.node_of(lost["ray_node"]) != victim
    else:
        assert lost["status"] == "error" and lost["exit_code"] == 3
        assert lost["message"].startswith("node lost during "), lost["message"]
        assert lost_id in (out / "summary.md").read_text() and "node lost" in (out / "junit.xml").read_text()
        # The re-run converts the lost model on the nodes left; the others come from the cache.
        done = run_batch(*ray_batch(cluster, zoo, "--out", out, "--workers", "2"))
        assert done.returncode == 0, done.stdout + done.stderr
        rerun = rows(read_summary(out))
        assert all(r["status"] == "pass" for r in rerun.values())
        assert {i for i, r in rerun.items() if not r["cached"]} == {lost_id}
    assert all(r["status"] == "pass" for i, r in by_id.items() if i != lost_id)


def test_models_run_only_on_nodes_with_the_memory_they_need(cluster_of, tmp_path, models):
    # Node "small" offers 1 GB: less than any model here needs (a zoo id's estimate is 1.7 GB).
    cluster = cluster_of(small=1, large=4)
    out = tmp_path / "out"
    zoo = write_zoo(
        tmp_path / "zoo.yaml",
        LINEAR,
        CNN[:-1] + ", memory: 3G}",
        "{id: huge, model: demo.cnn, memory: 8G}",
        # Model files (a SavedModel directory, a .tflite) travel to the slot with the task.
        f"{{id: savedmodel, model: {models / 'affine_savedmodel'}}}",
        f"{{id: tflite, model: {models / 'small.tflite'}}}",
        extra="allow_paths_outside_base: true\n",
    )
    done = run_batch(*ray_batch(cluster, zoo, "--out", out, "--workers", "2"))
    assert done.returncode == 1, done.stdout + done.stderr
    by_id = rows(read_summary(out))
    assert by_id["huge"]["status"] == "error" and by_id["huge"]["stage"] == "placement"
    assert "needs 8.0 GB (its zoo entry's `memory`), more than any live node" in by_id["huge"]["message"]
    assert "offers (4.0 GB); not started" in by_id["huge"]["message"]
    for entry_id in ("linear_regression", "cnn", "savedmodel", "tflite"):
        assert by_id[entry_id]["status"] == "pass", by_id[entry_id]["message"]
        assert cluster.node_of(by_id[entry_id]["ray_node"]) == "large"
    assert not list(cluster.tmp["small"].glob("tf2torch-*"))
    # The worker read the copy in the slot's scratch directory; the summary names the driver's file.
    for entry_id, name in (("savedmodel", "affine_savedmodel"), ("tflite", "small.tflite")):
        job = json.loads((out / entry_id / "logs" / "tf-job.json").read_text())
        assert Path(job["config"]["model"]).is_relative_to(cluster.tmp["large"])
        assert by_id[entry_id]["model"] == str(models / name)


def test_a_cluster_without_a_shared_out_writes_what_the_local_executor_writes(cluster_of, tmp_path):
    cluster = cluster_of(a=6, b=6)
    local_out, ray_out = tmp_path / "local", tmp_path / "ray"
    local = run_batch(SMOKE, "--out", local_out, "--workers", "2")
    assert local.returncode == 0, local.stdout + local.stderr
    done = run_batch(*ray_batch(cluster, SMOKE, "--out", ray_out, "--workers", "2"))
    assert done.returncode == 0, done.stdout + done.stderr
    here, there = rows(read_summary(local_out)), rows(read_summary(ray_out))
    assert set(here) == set(there)
    converted = [r for r in there.values() if r["status"] != "skipped"]  # smoke.yaml disables one
    assert {cluster.node_of(r["ray_node"]) for r in converted} == {"a", "b"}
    for entry_id, row in here.items():
        if row["status"] == "skipped":
            continue
        other = there[entry_id]
        assert (other["status"], other["stage"], other["model"]) == (
            row["status"],
            row["stage"],
            row["model"],
        )
        assert set(other["worst"]) == set(row["worst"])
        for pair, value in row["worst"].items():
            # Slots side by side run torch on one thread each: float32 sums in another order.
            assert other["worst"][pair] == pytest.approx(value, rel=1e-3, abs=1e-6), (entry_id, pair)
        # The run directory came back whole, under the driver's --out, its report pointing there.
        files = {p.relative_to(local_out / entry_id) for p in (local_out / entry_id).rglob("*")}
        assert {p.relative_to(ray_out / entry_id) for p in (ray_out / entry_id).rglob("*")} == files
        report = json.loads((ray_out / entry_id / "report.json").read_text())
        assert report["out_dir"] == str(ray_out / entry_id)
    # The slots' scratch directories are gone from the nodes.
    for name in ("a", "b"):
        assert not list(cluster.tmp[name].glob("tf2torch-*")), name
    # A re-run is answered from the cache the run directories brought back.
    again = run_batch(*ray_batch(cluster, SMOKE, "--out", ray_out, "--workers", "2"))
    assert again.returncode == 0
    assert all(r["cached"] for r in rows(read_summary(ray_out)).values() if r["status"] != "skipped")
