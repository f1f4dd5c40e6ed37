"""Every entry of configs/zoos/families.yaml converts end to end within its tolerances.

The zoo runs once, as one `tf2torch batch` (one worker slot: the largest models need most of the
machine's memory) with --prune (its model files would fill a CI disk), so TensorFlow and torch are imported once rather than once per model; each entry
is then checked as its own test case.
"""

from __future__ import annotations

import pytest
from cli_runner import REPO, read_report, run_zoo
from standalone_model import input_names, run_standalone

from pipeline.batching.zoo_file import load_zoo

ZOO = REPO / "configs" / "zoos" / "families.yaml"
FAMILIES = load_zoo(ZOO)
PAIRS = {"tf_vs_onnx", "onnx_vs_torch", "tf_vs_torch"}


@pytest.fixture(scope="module")
def zoo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("families")
    return out, run_zoo(ZOO, out, "--prune")


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
        # torch.export takes every model.py with the dimensions TF leaves unknown dynamic (RNNs too:
        # model.py's GRU/LSTM run their time loop as torch's scan while exporting)
        exported = stages["torch_export"]
        assert exported["status"] == "pass", exported.get("error")
        if stages["load"]["details"]["second_shape"]:
            assert "tf_vs_exported_second_shape" in {c["pair"] for c in exported["comparisons"]}


@pytest.mark.slow
def test_every_model_py_runs_with_only_torch_installed(zoo_run):
    """Every model.py imports and runs where tensorflow, onnx, onnx2torch and this package cannot be
    imported (its weights were pruned: the native stage compared its numbers with TF's already)."""
    out, rows = zoo_run
    native = [
        e.id
        for e in FAMILIES
        if not e.disabled
        and any(s["name"] == "native" and s["status"] == "pass" for s in read_report(out / e.id)["stages"])
    ]
    assert len(native) > 60
    result = run_standalone([(out / i, input_names(read_report(out / i))) for i in native])
    assert result["imported_blocked"] == [] and len(result["worst"]) == len(native)


# Families whose model masks padded positions: Embedding(mask_zero) before RNNs, Masking, attention
# under a mask computed from the token ids.
MASKED = {
    "family.masked_lstm",
    "family.masked_bidirectional",
    "family.masking_sequence",
    "family.bert_style_encoder",
}


@pytest.mark.slow
@pytest.mark.parametrize("entry", [e for e in FAMILIES if e.config.model in MASKED], ids=lambda e: e.id)
def test_masked_families_ran_on_padded_rows(entry, zoo_run):
    """Every sample batch but the first was right-padded (one row at full length, one at one step),
    a mask the graph reads masked a position, and every stage matched TF there (the entry passed)."""
    out, rows = zoo_run
    assert rows[entry.id]["status"] == "pass"
    report = read_report(out / entry.id)
    padded = [i for i in report["inputs"] if i.get("padding")]
    assert padded
    for spec in padded:
        batch, length = spec["shape"][:2]
        lengths = spec["padding"]["lengths"]
        assert lengths[0] is None and min(lengths[1]) == 1
        assert max(lengths[1]) == (length if batch > 1 else 1)
    validate = next(s for s in report["stages"] if s["name"] == "validate")
    masks = [n for n in validate["details"]["exercised"]["nodes"] if "mask" in n and n["selected_false"]]
    assert masks and validate["details"]["warnings"] == []  # the masks' exercise warned of nothing


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
    code = _model_py_with(zoo_run, entry_id, RECOVERED[entry_id])
    # Sizes TF leaves unknown are read from the input, not baked in: `tokens.size(1)`.
    assert ".size(1)" in code


# Keras RNN Loops recovered as torch's modules, read from the model.py each wrote; the masked LSTM
# keeps its mask (a third argument of model.py's LSTM).
RECURRENT = {
    "family.gru@2x10": ["self.gru = GRU(6, 12)", "class GRU(nn.GRU)"],
    "family.bidirectional_gru@2x10": ["GRU(6, 8)", "_forward", "_backward"],
    "family.bidirectional_rnn_dropout@2x10": ["LSTM(6, 8)", "GRU(16, 8)"],
    "family.masked_lstm@2x10": ["LSTM(4, 8)", ", None, "],
    # Bidirectional returning sequences: Keras zeroes the masked steps' outputs
    "family.masked_bidirectional@2x10": ["GRU(6, 8)", "LSTM(16, 6)", ", 0.0)"],
    "family.masking_sequence@3x9": ["LSTM(5, 8)", "GRU(8, 6)", ", None, "],
}


@pytest.mark.slow
@pytest.mark.parametrize("entry_id", sorted(RECURRENT))
def test_keras_rnn_loops_read_as_gru_and_lstm(entry_id, zoo_run):
    code = _model_py_with(zoo_run, entry_id, RECURRENT[entry_id])
    assert "class Loop(" not in code  # no Python loop left over time steps


@pytest.mark.slow
def test_tf_padding_goes_into_the_layers_after_it(zoo_run):
    """TF's 'same' padding with a stride and ZeroPadding2D before a depthwise convolution: no padded
    copy of the input (ZeroPadConv2d), k3, k5 and a dilated kernel; ResNet's ZeroPadding2D before a
    max pool of ReLU6 outputs: the pool's padding. The full convolution keeps its nn.ZeroPad2d
    (extra zero taps would cost it more than the copy). The global average pool (ONNX ReduceMean
    keeping its dims, then two Squeezes) reads as one mean."""
    code = _model_py_with(
        zoo_run,
        "family.tf_padding@b2",
        [
            "class ZeroPadConv2d(nn.Conv2d):",
            "ZeroPadConv2d(8, 8, 3, stride=2, groups=8, pad=(0, 1, 0, 1))",
            "ZeroPadConv2d(8, 16, 5, stride=2, groups=8, pad=(1, 2, 1, 2))",
            "ZeroPadConv2d(16, 16, 3, dilation=2, groups=16, pad=(0, 2, 2, 0))",
            "nn.MaxPool2d(3, stride=2, padding=1)",
            "x = torch.mean(x, dim=[2, 3])\n",
        ],
    )
    assert code.count(" = nn.ZeroPad2d(") == 1  # the full convolution's
    assert "squeeze" not in code


def _model_py_with(zoo_run, entry_id: str, expected: list[str]) -> str:
    out, rows = zoo_run
    assert rows[entry_id]["status"] == "pass", rows[entry_id]["message"]
    code = (out / entry_id / "model.py").read_text()
    missing = [text for text in expected if text not in code]
    assert not missing, f"model.py of {entry_id} lacks {missing}"
    return code
