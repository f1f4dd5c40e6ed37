"""Localisation: a real model with one node broken on purpose, and the node named.

The torch side is broken through a user converter (the config's `converters:` key) that replaces
onnx2torch's Sigmoid with x * 0.5 + 0.5; the ONNX side by editing one Conv weight in model.onnx after a
passing conversion, then `tf2torch localize` on that run."""

from __future__ import annotations

import subprocess
from pathlib import Path

import onnx
import pytest
from cli_runner import REPO, read_report, run_command
from onnx import numpy_helper

WRONG_SIGMOID = '''
import torch
from onnx2torch.utils.common import OperationConverterResult, onnx_mapping_from_node

from pipeline.torch_worker.converters.plugins import replace_converter


class HalfLinear(torch.nn.Module):
    """Wrong on purpose: the tangent of the sigmoid at 0, not the sigmoid."""

    def forward(self, x):
        return x * 0.5 + 0.5


@replace_converter("Sigmoid", version=13)
def convert(node, graph):
    return OperationConverterResult(torch_module=HalfLinear(), onnx_mapping=onnx_mapping_from_node(node))
'''


@pytest.fixture(scope="module")
def wrong_sigmoid_run(models, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    base = tmp_path_factory.mktemp("wrong_sigmoid")
    (base / "wrong_sigmoid.py").write_text(WRONG_SIGMOID)
    (base / "config.yaml").write_text("converters: [wrong_sigmoid.py]\n")
    out = base / "run"
    return out, run_command(
        "convert", models / "localize.keras", "--config", base / "config.yaml", "--out", out
    )


def test_a_wrong_converter_is_named_as_the_diverging_node(wrong_sigmoid_run):
    out, proc = wrong_sigmoid_run
    assert proc.returncode == 1, proc.stdout + proc.stderr
    pairs = read_report(out)["localization"]["pairs"]
    culprit = pairs["onnx_vs_torch"]["culprit"]
    assert culprit["op_type"] == "Sigmoid"
    assert "/gate_1/Sigmoid" in culprit["node"]
    assert all(i["passed"] for i in culprit["inputs"]) and culprit["inputs"]
    assert not any(o["passed"] for o in culprit["outputs"])
    # The path runs from the input through the culprit to the failing output.
    path = culprit["path"]
    assert path[0]["op_type"] == "input" and path[0]["passed"]
    assert path[-1]["value"] == "output_0" and not path[-1]["passed"]
    # TF and onnxruntime agree, and the localisation says so rather than blaming a node.
    assert pairs["tf_vs_onnx"]["status"] == "no divergence"
    assert "onnx_vs_torch: first diverging node" in proc.stdout and "(Sigmoid)" in proc.stdout


def test_report_html_renders_in_headless_chromium(wrong_sigmoid_run, tmp_path):
    out, _ = wrong_sigmoid_run
    render = REPO / "scripts" / "render_report.sh"
    dom = subprocess.run([render, out / "report.html"], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr
    # Chromium parsed the page: the verdict, the three error histograms' figure and two localisation
    # plots (one per pair), and the culprit in the path table.
    assert "TOLERANCE FAIL" in dom.stdout
    assert dom.stdout.count("<svg") == 3
    assert "culprit" in dom.stdout and "/gate_1/Sigmoid" in dom.stdout
    shot = tmp_path / "report.png"
    done = subprocess.run([render, out / "report.html", shot], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_an_edited_onnx_weight_is_named_across_the_nhwc_nchw_layouts(models, tmp_path):
    out = tmp_path / "run"
    proc = run_command("convert", models / "localize.keras", "--out", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "localization" not in read_report(out)  # auto: nothing failed, nothing to localise

    model = onnx.load(str(out / "model.onnx"))
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    weight = next(t for t in model.graph.initializer if t.name == conv.input[1])
    values = numpy_helper.to_array(weight).copy()
    values.flat[0] += 0.5
    weight.CopyFrom(numpy_helper.from_array(values, weight.name))
    onnx.save(model, str(out / "model.onnx"))

    proc = run_command("localize", out)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    pairs = read_report(out)["localization"]["pairs"]
    culprit = pairs["tf_vs_onnx"]["culprit"]
    assert culprit["op_type"] == "Conv" and "/conv_1/" in culprit["node"]
    # TF holds the convolution's output NHWC, ONNX NCHW: compared after moving the channels back.
    assert culprit["outputs"][0]["permutation"] == [0, 2, 3, 1]
    assert all(i["passed"] for i in culprit["inputs"])
    # onnx2torch imports the edited graph faithfully: torch follows onnxruntime.
    assert pairs["onnx_vs_torch"]["status"] == "no divergence"
    assert "Localisation" in (out / "report.md").read_text()


def test_localize_on_a_directory_without_a_report_is_a_usage_error(tmp_path):
    proc = run_command("localize", tmp_path)
    assert proc.returncode == 2
    assert "is not the report of a `tf2torch convert` run" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_no_localize_turns_it_off(models, tmp_path, write_config):
    (tmp_path / "wrong_sigmoid.py").write_text(WRONG_SIGMOID)
    config = write_config("converters: [wrong_sigmoid.py]\n")
    out = tmp_path / "run"
    proc = run_command(
        "convert", models / "localize.keras", "--config", config, "--out", out, "--no-localize"
    )
    assert proc.returncode == 1
    assert "localization" not in read_report(out)
    assert (out / "torch_outputs.npz").exists()  # the conversion itself still ran to the end


@pytest.mark.parametrize(
    "model, config",
    [
        # LayerNormalization's SquaredDifference and Rsqrt are decomposed by tf2onnx into two ONNX
        # nodes each, the first keeping the TF name: compared by name alone, they were false culprits.
        ("family.transformer_block", "inputs: [{name: tokens, shape: [2, 9, 32]}]\n"),
        # Grouped convolutions: TF's own graph optimizer would fuse them into a kernel its CPU build
        # lacks, which made TF's side fail.
        pytest.param(
            "keras.applications.ConvNeXtTiny",
            "samples: 1\ninputs: [{name: image, shape: [2, 32, 32, 3]}]\n",
            marks=pytest.mark.slow,
        ),
    ],
)
def test_a_correct_conversion_has_no_culprit(model, config, tmp_path, write_config):
    out = tmp_path / "run"
    proc = run_command("convert", model, "--config", write_config(config), "--localize", "--out", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    localization = read_report(out)["localization"]
    assert localization["status"] == "done"
    for pair in ("tf_vs_onnx", "onnx_vs_torch"):
        found = localization["pairs"][pair]
        assert found["status"] == "no divergence", (pair, found.get("culprit"))
        assert found["compared"] > 50  # the intermediates were really compared, not just the outputs
