"""Gradient parity: TF's and torch's gradients of the projected outputs with respect to the inputs."""

from __future__ import annotations

import numpy as np
import pytest
from cli_runner import read_report, run_command

# Forward exactly ReLU, backward nothing: every output comparison passes, only gradients can tell.
DETACHED_RELU = """
import torch
from onnx2torch.utils.common import OperationConverterResult, onnx_mapping_from_node

from pipeline.torch_worker.converters.plugins import replace_converter


class DetachedRelu(torch.nn.Module):
    def forward(self, x):
        return torch.relu(x).detach()


@replace_converter("Relu", version=14)
def convert(node, graph):
    return OperationConverterResult(torch_module=DetachedRelu(), onnx_mapping=onnx_mapping_from_node(node))
"""


def stage(report: dict, name: str) -> dict:
    return next(s for s in report["stages"] if s["name"] == name)


# ResNet50 rather than MobileNetV2: with random weights MobileNetV2's logits barely depend on its input
# (input gradients of 1e-12), so its gradients would match trivially; ResNet50's reach 8e-2.
RESNET50_32 = "samples: 1\ninputs: [{name: image, shape: [1, 32, 32, 3]}]\n"


@pytest.mark.parametrize(
    "model, config",
    [
        ("demo.cnn", ""),
        ("family.mlp", ""),
        pytest.param("keras.applications.ResNet50", RESNET50_32, marks=pytest.mark.slow),
    ],
)
def test_gradients_match_on_demo_models_and_a_keras_application(model, config, tmp_path, write_config):
    out = tmp_path / "run"
    proc = run_command("convert", model, "--config", write_config(config), "--gradients", "--out", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = read_report(out)
    [row] = stage(report, "gradients")["comparisons"]
    assert row["pair"] == "gradients" and row["passed"]
    assert row["reference"] == "tf_gradients" and row["candidate"] == "torch_gradients"
    gradients = np.load(out / "tf_gradients.npz")
    name = report["inputs"][0]["name"]
    assert gradients[name].shape == np.load(out / "inputs.npz")[name].shape
    assert np.abs(gradients[name]).max() > 1e-4  # a real signal, not zeros compared with zeros
    assert "gradients max|diff|" in proc.stdout


def test_a_converter_with_the_right_outputs_and_no_gradient_fails_only_the_gradients(tmp_path, write_config):
    (tmp_path / "detached_relu.py").write_text(DETACHED_RELU)
    config = write_config("converters: [detached_relu.py]\nlocalize: never\n")
    out = tmp_path / "run"
    proc = run_command("convert", "family.mlp", "--config", config, "--gradients", "--out", out)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    report = read_report(out)
    assert stage(report, "import")["status"] == "pass"
    gradients = stage(report, "gradients")
    assert gradients["status"] == "tolerance_fail"
    assert gradients["details"]["no_gradient_path"] == ["features"]


def test_integer_inputs_skip_the_gradients_and_say_why(tmp_path, write_config):
    config = write_config("inputs: [{name: tokens, shape: [2, 7]}]\n")
    out = tmp_path / "run"
    proc = run_command("convert", "family.masked_lstm", "--config", config, "--gradients", "--out", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = read_report(out)
    assert stage(report, "tf_gradients")["status"] == "skipped"
    assert "no floating-point input" in stage(report, "tf_gradients")["reason"]
    assert stage(report, "gradients")["status"] == "skipped"
    assert stage(report, "gradients")["comparisons"] == []


def test_gradients_of_a_frozen_graph(models, tmp_path, write_config):
    config = write_config("inputs:\n  - name: features:0\noutputs: [probabilities:0]\ngradients: true\n")
    out = tmp_path / "run"
    proc = run_command("convert", models / "frozen.pb", "--config", config, "--out", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [row] = stage(read_report(out), "gradients")["comparisons"]
    assert row["passed"] and row["output"] == "features:0"
