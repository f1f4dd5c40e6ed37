"""Every entry of configs/zoos/families.yaml converts end to end within its tolerances."""

from __future__ import annotations

import pytest
import yaml
from cli_runner import REPO, read_report, run_cli

from pipeline.zoo_file import load_zoo

FAMILIES = load_zoo(REPO / "configs" / "zoos" / "families.yaml")
PAIRS = {"tf_vs_onnx", "onnx_vs_torch", "tf_vs_torch"}


@pytest.mark.slow
@pytest.mark.parametrize("entry", FAMILIES, ids=[e.id for e in FAMILIES])
def test_family_converts_end_to_end(entry, tmp_path):
    if entry.disabled:
        pytest.skip(f"disabled in families.yaml: {entry.disabled}")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(entry.config.model_dump(mode="json", exclude_none=True)))
    out = tmp_path / "run"
    proc = run_cli("convert", "--config", config, "--out", out, timeout=900)
    report = read_report(out)
    failures = [f"{s['name']}: {s['error']}" for s in report["stages"] if s["status"] != "pass"]
    assert proc.returncode == 0 and report["status"] == "pass", failures
    rows = [c for s in report["stages"] for c in s["comparisons"]]
    assert {c["pair"] for c in rows} == PAIRS
    assert all(c["passed"] for c in rows)
    needs = report["stages"][-1]["details"]["model_pt_needs_tf2torch"]
    assert needs == (["OnnxLoop"] if "Loop" in report["stages"][1]["details"]["op_types"] else [])
