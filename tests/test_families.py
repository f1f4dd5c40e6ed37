"""Every entry of configs/zoos/families.yaml converts end to end within its tolerances.

The zoo runs once, as one `tf2torch batch` (one worker slot: the largest models need most of the
machine's memory) with --prune (its model files would fill a CI disk), so TensorFlow and torch are imported once rather than once per model; each entry
is then checked as its own test case.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from cli_runner import REPO, read_report

from pipeline.zoo_file import load_zoo

ZOO = REPO / "configs" / "zoos" / "families.yaml"
FAMILIES = load_zoo(ZOO)
PAIRS = {"tf_vs_onnx", "onnx_vs_torch", "tf_vs_torch"}


@pytest.fixture(scope="module")
def zoo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("families")
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "batch", str(ZOO), "--out", str(out), "--workers", "1", "--prune"],
        cwd=REPO,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert done.returncode in (0, 1), done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    return out, {row["id"]: row for row in summary["models"]}


@pytest.mark.slow
@pytest.mark.parametrize("entry", FAMILIES, ids=[e.id for e in FAMILIES])
def test_family_converts_end_to_end(entry, zoo_run):
    out, rows = zoo_run
    if entry.disabled:
        assert rows[entry.id]["status"] == "skipped"
        pytest.skip(f"disabled in the zoo: {entry.disabled}")
    row = rows[entry.id]
    assert row["status"] == "pass", f"{row['stage']}: {row['message']}"
    report = read_report(out / entry.id)
    comparisons = [c for s in report["stages"] for c in s["comparisons"]]
    assert {c["pair"] for c in comparisons} >= PAIRS
    assert all(c["passed"] for c in comparisons)
    needs = next(s for s in report["stages"] if s["name"] == "import")["details"]["model_pt_needs_tf2torch"]
    # Only the control-flow modules are classes of this package; every other converter emits torch code.
    op_types = report["stages"][1]["details"]["op_types"]
    assert needs == sorted(cls for op, cls in (("If", "OnnxIf"), ("Loop", "OnnxLoop")) if op in op_types)
    stages = {s["name"]: s for s in report["stages"]}
    if "native" in stages:
        # Every model that imports gets a model.py (Loops as Python loops, shape-computed sizes as
        # input sizes), checked at a second value of every dimension TF leaves unknown.
        assert stages["native"]["details"]["model_py"].startswith("model.py"), stages["native"]["details"]
        assert (out / entry.id / "model.py").is_file()
        if stages["load"]["details"]["second_shape"]:
            pairs = {c["pair"] for c in stages["native"]["comparisons"]}
            assert "tf_vs_native_second_shape" in pairs


# What the native passes recover in the Transformer families, read from the model.py each wrote.
RECOVERED = {
    "family.transformer_encoder@2x10": ["F.scaled_dot_product_attention(", "nn.LayerNorm("],
    "family.transformer_block@2x16": ["F.scaled_dot_product_attention(", "nn.LayerNorm(", "nn.GELU()"],
    "family.bert_style_encoder@2x12": [
        "F.scaled_dot_product_attention(",
        "attn_mask=",
        "nn.LayerNorm(32, eps=1e-12)",
        "nn.GELU(approximate='tanh')",
        "nn.Embedding(",
    ],
    "family.causal_decoder_lm@2x12": [
        "F.scaled_dot_product_attention(",
        "attn_mask=",
        "nn.LayerNorm(",
        "nn.GELU()",
        "nn.Embedding(",
    ],
}


@pytest.mark.slow
@pytest.mark.parametrize("entry_id", sorted(RECOVERED))
def test_transformers_model_py_reads_as_attention(entry_id, zoo_run):
    out, rows = zoo_run
    assert rows[entry_id]["status"] == "pass", rows[entry_id]["message"]
    code = (out / entry_id / "model.py").read_text()
    missing = [call for call in RECOVERED[entry_id] if call not in code]
    assert not missing, f"model.py of {entry_id} lacks {missing}"
    # Sizes TF leaves unknown are read from the input, not baked in: `tokens.size(1)`.
    assert ".size(1)" in code
