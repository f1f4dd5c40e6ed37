"""Every KerasHub backbone of configs/zoos/kerashub.yaml (built offline from small configs) gets a
model.py that matches TF at two values of every dynamic dimension, imports with only torch, and is
taken by torch.export with those dimensions dynamic.

The zoo runs once, as one `tf2torch batch` with one worker; each entry is then its own test case.
Skipped where keras-hub is not installed (`make setup` installs it).
"""

from __future__ import annotations

import importlib.util

import pytest
from cli_runner import REPO, read_report, run_zoo
from standalone_model import input_names, run_standalone

from pipeline.batching.zoo_file import load_zoo

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("keras_hub") is None, reason="keras-hub is not installed"),
]

ZOO = REPO / "configs" / "zoos" / "kerashub.yaml"
BACKBONES = load_zoo(ZOO)

# Backbones whose attention the native passes recover as F.scaled_dot_product_attention: the
# encoders, the GPT-style decoders with a padding mask (GPT-2's large negative kept as an additive
# mask), the rotary-embedding decoders and the vision transformers.
READS_AS_ATTENTION = [
    "keras_hub.BertBackbone",
    "keras_hub.AlbertBackbone",
    "keras_hub.ElectraBackbone",
    "keras_hub.DistilBertBackbone",
    "keras_hub.RobertaBackbone",
    "keras_hub.XLMRobertaBackbone",
    "keras_hub.ESMBackbone",
    "keras_hub.GPT2Backbone",
    "keras_hub.OPTBackbone",
    "keras_hub.LlamaBackbone",
    "keras_hub.MistralBackbone",
    "keras_hub.Qwen2Backbone",
    "keras_hub.Qwen3Backbone",
    "keras_hub.Phi3Backbone",
    "keras_hub.ViTBackbone",
    "keras_hub.DeiTBackbone",
    "keras_hub.MiTBackbone",
]
# RMSNorm written as nn.RMSNorm (mean of x ** 2 behind a cast to the same dtype)
READS_AS_RMS_NORM = ["keras_hub.LlamaBackbone", "keras_hub.MistralBackbone", "keras_hub.Qwen3Backbone"]


@pytest.fixture(scope="module")
def zoo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("kerashub")
    return out, run_zoo(ZOO, out)


@pytest.mark.parametrize("entry", BACKBONES, ids=[e.id for e in BACKBONES])
def test_backbone_gets_a_dynamic_model_py_and_exported_program(entry, zoo_run):
    out, rows = zoo_run
    row = rows[entry.id]
    assert row["status"] == "pass", f"{row['stage']}: {row['message']}"
    report = read_report(out / entry.id)
    stages = {s["name"]: s for s in report["stages"]}
    assert stages["native"]["details"]["model_py"] == "model.py + model.safetensors"
    dynamic = stages["load"]["details"]["second_shape"]["inputs"]
    assert dynamic, "every backbone has a dimension TF leaves unknown (the batch at least)"
    native_pairs = {c["pair"] for c in stages["native"]["comparisons"]}
    assert {"tf_vs_native", "tf_vs_native_second_shape"} <= native_pairs
    exported = stages["torch_export"]
    assert exported["status"] == "pass", exported.get("error")
    assert "tf_vs_exported_second_shape" in {c["pair"] for c in exported["comparisons"]}
    # every differing axis was exported dynamic
    first = {i["name"]: i["shape"] for i in report["inputs"]}
    for name, second in dynamic.items():
        axes = [axis for axis, (a, b) in enumerate(zip(first[name], second, strict=True)) if a != b]
        assert exported["details"]["dynamic_dims"][name] == axes
    assert all(c["passed"] for s in report["stages"] for c in s["comparisons"])


def test_every_model_py_runs_with_only_torch_installed(zoo_run):
    out, rows = zoo_run
    runs = [
        (out / e.id, input_names(read_report(out / e.id)))
        for e in BACKBONES
        if rows[e.id]["status"] == "pass"
    ]
    assert len(runs) == len(BACKBONES)
    result = run_standalone(runs)
    assert result["imported_blocked"] == []
    assert len(result["worst"]) == len(BACKBONES)


@pytest.mark.parametrize("entry_id", READS_AS_ATTENTION)
def test_transformer_backbones_read_as_attention(entry_id, zoo_run):
    out, rows = zoo_run
    assert rows[entry_id]["status"] == "pass", rows[entry_id]["message"]
    code = (out / entry_id / "model.py").read_text()
    assert "F.scaled_dot_product_attention(" in code
    if "images" not in code:  # the vision transformers have a fixed image size
        assert ".size(1)" in code  # the sequence length is read from the input


@pytest.mark.parametrize("entry_id", READS_AS_RMS_NORM)
def test_llama_style_backbones_read_as_rms_norm(entry_id, zoo_run):
    out, rows = zoo_run
    assert rows[entry_id]["status"] == "pass", rows[entry_id]["message"]
    assert "nn.RMSNorm(" in (out / entry_id / "model.py").read_text()


MASKED = [e for e in BACKBONES if any(i.name == "padding_mask" for i in e.config.inputs or [])]


@pytest.mark.parametrize("entry", MASKED, ids=[e.id for e in MASKED])
def test_backbones_with_a_padding_mask_ran_on_padded_rows(entry, zoo_run):
    """The second sample batch is right-padded (rows from full length down to one token) with the
    padding mask and the token ids agreeing, and some mask the graph selects by masked a position."""
    out, rows = zoo_run
    report = read_report(out / entry.id)
    inputs = {i["name"]: i for i in report["inputs"]}
    mask, tokens = inputs["padding_mask"]["padding"], inputs["token_ids"]["padding"]
    assert mask["mask"] and not tokens["mask"]
    assert mask["lengths"] == tokens["lengths"] == [None, [12, 1]]
    validate = next(s for s in report["stages"] if s["name"] == "validate")
    masks = [n for n in validate["details"]["exercised"]["nodes"] if "mask" in n and n["selected_false"]]
    assert masks, validate["details"]["exercised"]
    assert validate["details"]["warnings"] == []  # the masks' exercise warned of nothing
