"""`tf2torch verify`: hand-written ports (tests/ports/) get the Keras weights transferred and are
compared with TF; the porting guide's mistaken ports get their mistake named."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_runner import REPO, read_report, run_command

PORTS = REPO / "tests" / "ports"
WITHIN_1E5 = "tolerances:\n  tf_vs_port: {atol: 1.0e-5, rtol: 0.0}\n"


def verify(model, port: str, out: Path, *extra, config: Path | None = None):
    args = ["verify", model, "--torch", PORTS / port, "--out", out, *extra]
    return run_command(*args, *(["--config", config] if config else []))


def port_report(out: Path) -> dict:
    return json.loads((out / "port_mapping.json").read_text())


def worst(out: Path) -> float:
    compared = [c for s in read_report(out)["stages"] for c in s["comparisons"] if c["pair"] == "tf_vs_port"]
    assert compared, "no tf_vs_port comparison"
    return max(c["max_abs_diff"] for c in compared)


@pytest.mark.parametrize(
    ("model", "port", "parameters"),
    [
        ("demo.linear_regression", "demo_ports.py:LinearRegression", 2),
        ("demo.cnn", "demo_ports.py:CNN", 4),
        ("demo.lstm", "demo_ports.py:LSTM", 6),
    ],
)
def test_correct_demo_ports_match_within_1e_5(model, port, parameters, tmp_path, write_config):
    done = verify(model, port, tmp_path / "out", config=write_config(WITHIN_1E5))
    assert done.returncode == 0, done.stdout + done.stderr
    assert worst(tmp_path / "out") <= 1e-5
    mapping = port_report(tmp_path / "out")
    assert len(mapping["rows"]) == parameters
    assert not mapping["findings"] and not mapping["mismatches"] and not mapping["unmatched"]
    assert f"weight mapping ({parameters} parameters)" in done.stdout
    assert "verdict: PASS" in done.stdout


def test_cnn_transfer_reorders_the_dense_rows_for_a_channels_first_flatten(tmp_path):
    done = verify("demo.cnn", "demo_ports.py:CNN", tmp_path / "out")
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {r["torch_parameter"]: r for r in port_report(tmp_path / "out")["rows"]}
    assert rows["fc.weight"]["tf_shapes"] == [[5408, 10]] and rows["fc.weight"]["torch_shape"] == [10, 5408]
    assert "HWC -> CHW" in rows["fc.weight"]["transform"]
    assert rows["conv1.weight"]["torch_shape"] == [32, 1, 3, 3]
    # The table is in report.md too.
    assert (
        "| `cnn/dense/kernel` | (5408, 10) | `fc.weight` | (10, 5408) |"
        in (tmp_path / "out/report.md").read_text()
    )


def test_mobilenet_v2_port_with_batchnorm_matches(tmp_path, write_config):
    config = write_config(WITHIN_1E5 + "samples: 2\ninputs: [{name: image, shape: [2, 32, 32, 3]}]\n")
    done = verify(
        "keras.applications.MobileNetV2", "mobilenet_v2_port.py:MobileNetV2", tmp_path / "o", config=config
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    assert worst(tmp_path / "o") <= 1e-5
    mapping = port_report(tmp_path / "o")
    assert len(mapping["rows"]) == 262  # every Keras variable, BatchNorm statistics included
    assert not mapping["findings"]
    depthwise = next(r for r in mapping["rows"] if r["torch_parameter"] == "blocks.1.depthwise.weight")
    assert depthwise["tf_shapes"] == [[3, 3, 96, 1]] and depthwise["torch_shape"] == [96, 1, 3, 3]


@pytest.mark.parametrize(
    ("model", "port", "shape"),
    [
        ("family.gru", "GRUNet", "{name: sequence, shape: [2, 5, 6]}"),
        ("family.bidirectional_gru", "BidirectionalGRUNet", "{name: sequence, shape: [2, 5, 6]}"),
        ("family.transformer_block", "TransformerBlock", "{name: tokens, shape: [2, 7, 32]}"),
        ("family.grouped_conv", "GroupedConvNet", None),
    ],
)
def test_family_ports_match(model, port, shape, tmp_path, write_config):
    config = write_config(WITHIN_1E5 + (f"inputs: [{shape}]\n" if shape else ""))
    done = verify(model, f"family_ports.py:{port}", tmp_path / "out", config=config)
    assert done.returncode == 0, done.stdout + done.stderr
    assert worst(tmp_path / "out") <= 1e-5


def test_gru_gates_are_reordered(tmp_path, write_config):
    config = write_config("inputs: [{name: sequence, shape: [2, 5, 6]}]\n")
    verify("family.gru", "family_ports.py:GRUNet", tmp_path / "out", config=config)
    rows = {r["torch_parameter"]: r for r in port_report(tmp_path / "out")["rows"]}
    assert "z,r,h -> r,z,n" in rows["gru.weight_ih_l0"]["transform"]
    assert "row 1 (recurrent)" in rows["gru.bias_hh_l0"]["transform"]


def _line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_nn_conv2d_typo_shows_the_users_line_and_the_right_name(tmp_path):
    done = verify("demo.cnn", "mistaken_ports.py:CNNWithConv2D", tmp_path / "out")
    assert done.returncode == 2, done.stdout + done.stderr
    line = _line_of(PORTS / "mistaken_ports.py", "nn.Conv2D(")
    assert f"mistaken_ports.py:{line} in __init__" in done.stdout
    assert "module 'torch.nn' has no attribute 'Conv2D'" in done.stdout
    assert "did you mean nn.Conv2d?" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_padding_mistake_names_both_layers_shapes_and_the_padding(tmp_path):
    weights = tmp_path / "port.safetensors"
    done = verify("demo.cnn", "mistaken_ports.py:CNNPadded", tmp_path / "out", "--save-weights", weights)
    assert done.returncode == 2, done.stdout + done.stderr
    mapping = port_report(tmp_path / "out")
    [mismatch] = mapping["mismatches"]
    assert "Keras `dense`" in mismatch and "`fc`" in mismatch
    assert "(5408, 10)" in mismatch and "(10, 6272)" in mismatch
    assert "nn.Linear(5408, 10)" in mismatch
    assert "13 x 13" in mismatch and "14 x 14" in mismatch
    [padding] = [f for f in mapping["findings"] if f["torch_module"] == "conv1"]
    assert padding["severity"] == "error"
    assert "padding=(1, 1)" in padding["message"] and "padding='valid'" in padding["message"]
    assert "shape mismatch: Keras `dense`" in done.stdout
    assert not weights.exists()  # nothing is written for a port the weights do not fit


@pytest.mark.parametrize(
    ("port", "expected"),
    [
        ("LSTMLastIndex", ["batch_first=True", "`output[:, -1]`", "receives (12, 64)", "receives (2, 64)"]),
        ("LSTMGuide", ["batch_first=False, so it reads (time, batch, features)", "fed (2, 12, 8)"]),
    ],
)
def test_lstm_last_step_mistakes_are_named(port, expected, tmp_path):
    done = verify("demo.lstm", f"mistaken_ports.py:{port}", tmp_path / "out")
    assert done.returncode == 1, done.stdout + done.stderr  # the outputs cannot match
    messages = " ".join(f["message"] for f in port_report(tmp_path / "out")["findings"])
    for text in expected:
        assert text in messages
    assert "shape (3, 12, 1) differs from the reference shape (3, 2, 1)" in done.stdout


def test_epsilon_mismatch_is_reported_even_when_outputs_pass(models, tmp_path):
    port = tmp_path / "bn_port.py"
    port.write_text(
        "import torch.nn as nn\n\n"
        "class Net(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.conv = nn.Conv2d(3, 4, 3, bias=False)\n"
        "        self.bn = nn.BatchNorm2d(4)  # torch defaults: eps 1e-5, momentum 0.1\n"
        "        self.head = nn.Linear(4, 2)\n\n"
        "    def forward(self, x):\n"
        "        return self.head(self.bn(self.conv(x)).relu().mean(dim=(2, 3)))\n"
    )
    done = run_command(
        "verify", models / "batchnorm.keras", "--torch", f"{port}:Net", "--out", tmp_path / "out"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    findings = port_report(tmp_path / "out")["findings"]
    assert [f["severity"] for f in findings] == ["warning", "warning"]
    assert "eps=1e-05" in findings[0]["message"] and "epsilon=0.001" in findings[0]["message"]
    assert "use momentum=0.01" in findings[1]["message"]
    assert "! warning: epsilon differs" in done.stdout
    assert "epsilon differs" in (tmp_path / "out/report.md").read_text()


def test_saved_weights_load_into_a_fresh_port_and_reproduce_tf(tmp_path):
    import importlib.util

    import torch
    from safetensors.torch import load_file

    weights = tmp_path / "cnn.safetensors"
    done = verify("demo.cnn", "demo_ports.py:CNN", tmp_path / "out", "--save-weights", weights)
    assert done.returncode == 0, done.stdout + done.stderr
    spec = importlib.util.spec_from_file_location("demo_ports", PORTS / "demo_ports.py")
    ports = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ports)
    model = ports.CNN().eval()
    model.load_state_dict(load_file(weights))
    images = np.load(tmp_path / "out/inputs.npz")["image"][0]
    expected = np.load(tmp_path / "out/tf_outputs.npz")
    with torch.no_grad():
        got = model(torch.from_numpy(images.transpose(0, 3, 1, 2).copy())).numpy()
    np.testing.assert_allclose(got, expected[next(iter(expected.files))][0], atol=1e-5)


def test_weight_mapping_pins_pairs_the_call_order_gets_wrong(models, tmp_path, write_config):
    out = tmp_path / "out"
    done = run_command(
        "verify", models / "two_inputs.keras", "--torch", PORTS / "two_inputs_port.py:TwoInputs", "--out", out
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert {m.split("`")[1] for m in port_report(out)["mismatches"]} == {"logits", "score"}
    assert "weight_mapping" in done.stdout
    config = write_config("weight_mapping: {logits: logits, score: score}\n")
    args = ["verify", models / "two_inputs.keras", "--torch", PORTS / "two_inputs_port.py:TwoInputs"]
    done = run_command(*args, "--out", out, "--config", config)
    assert done.returncode == 0, done.stdout + done.stderr
    pinned = {
        r["torch_parameter"]: r["tf_variables"][0] for r in port_report(out)["rows"] if r["tf_variables"]
    }
    assert pinned["score.weight"].endswith("score/kernel")


def test_unmatched_modules_are_listed_and_stop_with_exit_2(tmp_path):
    port = tmp_path / "extra.py"
    port.write_text(
        "import torch.nn as nn\n\n"
        "class Net(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.linear = nn.Linear(1, 1)\n"
        "        self.unused = nn.Linear(4, 4)\n\n"
        "    def forward(self, x):\n"
        "        return self.linear(x)\n"
    )
    done = run_command(
        "verify", "demo.linear_regression", "--torch", f"{port}:Net", "--out", tmp_path / "out"
    )
    assert done.returncode == 2, done.stdout + done.stderr
    [unmatched] = port_report(tmp_path / "out")["unmatched"]
    assert unmatched["side"] == "torch" and unmatched["name"] == "unused"
    assert "weight (4, 4)" in unmatched["shapes"]
    assert "unmatched: `unused`" in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["demo.cnn"], "verify needs the port: --torch"),
        (["demo.cnn", "--torch", "tests/ports/demo_ports.py"], "expects path/to/module.py:ClassName"),
        (["demo.cnn", "--torch", "tests/ports/missing.py:CNN"], "torch module file not found"),
        (["demo.cnn", "--torch", "tests/ports/demo_ports.py:Nope"], "defines no 'Nope' (classes there: "),
        (["demo.lstm", "--torch", "tests/ports/demo_ports.py:LSTM", "--init-args", "{bad"], "not valid JSON"),
        (
            ["demo.lstm", "--torch", "tests/ports/demo_ports.py:LSTM", "--init-args", '{"hidden": 3}'],
            "unexpected keyword",
        ),
    ],
)
def test_bad_usage_exits_2_with_a_message(args, message, tmp_path):
    done = run_command("verify", *args, "--out", tmp_path / "out")
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def test_a_model_without_keras_layers_is_refused(models, tmp_path):
    done = run_command(
        "verify",
        models / "affine_savedmodel",
        "--torch",
        "tests/ports/demo_ports.py:CNN",
        "--out",
        tmp_path / "o",
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "needs a Keras model" in done.stdout


def test_first_divergence_points_between_the_modules(tmp_path):
    done = verify("demo.cnn", "mistaken_ports.py:CNNWithoutReLU", tmp_path / "out")
    assert done.returncode == 1, done.stdout + done.stderr
    mapping = port_report(tmp_path / "out")
    conv, dense = mapping["layers"]
    assert conv["input"]["passed"] and conv["output"]["passed"]  # Keras's relu applied to torch's conv
    assert dense["input"]["passed"] is False
    assert mapping["first_divergence"].startswith("the input of `fc` (Keras `dense`) differs")
    assert "after `conv1`, before `fc`" in mapping["first_divergence"]
    assert "! first divergence: the input of `fc`" in done.stdout


def test_swapped_linear_arguments_are_named(tmp_path):
    done = verify("demo.cnn", "mistaken_ports.py:CNNSwappedLinear", tmp_path / "out")
    assert done.returncode == 2, done.stdout + done.stderr
    [mismatch] = port_report(tmp_path / "out")["mismatches"]
    assert "The arguments look swapped" in mismatch and "nn.Linear(5408, 10)" in mismatch


def test_same_padding_with_stride_2_is_not_torch_padding_1(tmp_path, write_config):
    config = write_config("samples: 1\ninputs: [{name: image, shape: [2, 32, 32, 3]}]\n")
    port = "mobilenet_v2_same_padding.py:SymmetricStem"
    done = verify("keras.applications.MobileNetV2", port, tmp_path / "out", config=config)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr
    mapping = port_report(tmp_path / "out")
    [stem] = [f for f in mapping["findings"] if f["torch_module"] == "stem"]
    assert "pads (0, 0) before and (1, 1) after" in stem["message"]
    assert "F.pad(x, (0, 1, 0, 1))" in stem["message"]
    assert mapping["first_divergence"].startswith("`stem` (Keras `Conv1`) gets the same input as Keras")
    # At 32 x 32 the shifted windows wash out by the logits: the outputs match, the mistake still fails.
    port_stage = read_report(tmp_path / "out")["stages"][1]
    assert all(c["passed"] for c in port_stage["comparisons"])
    assert port_stage["status"] == "tolerance_fail" and "1 mistake(s) were found" in port_stage["error"]


def test_a_keras_lstm_running_backwards_is_an_error_finding(tmp_path, write_config):
    config = write_config("inputs: [{name: sequence, shape: [2, 5, 6]}]\n")
    port = "mistaken_ports.py:BidirectionalThenBackwardLSTM"
    done = verify("family.bidirectional_lstm", port, tmp_path / "out", config=config)
    assert done.returncode == 1, done.stdout + done.stderr
    findings = port_report(tmp_path / "out")["findings"]
    assert any(f["severity"] == "error" and "go_backwards=True" in f["message"] for f in findings)


def test_every_other_layer_kind_transfers(models, tmp_path, write_config):
    """Embedding, Conv1D, Bidirectional LSTM, two LSTMs into one num_layers=2 module, SimpleRNN,
    SeparableConv2D into two convs, Conv2DTranspose, Conv3D (5-D input moved to channels-first)."""
    port = PORTS / "layer_zoo_port.py:LayerZoo"
    out = tmp_path / "out"
    done = run_command(
        "verify",
        models / "layer_zoo.keras",
        "--torch",
        port,
        "--out",
        out,
        "--config",
        write_config(WITHIN_1E5),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert worst(out) <= 1e-5
    rows = {r["torch_parameter"]: r for r in port_report(out)["rows"]}
    assert rows["stacked.weight_ih_l1"]["tf_variables"] == ["lstm_b/lstm_cell/kernel"]
    assert rows["bilstm.weight_hh_l0_reverse"]["tf_variables"][0].startswith("backward_lstm/")
    assert rows["depthwise.weight"]["tf_shapes"] == [[3, 3, 3, 2]] and rows["depthwise.weight"][
        "torch_shape"
    ] == [6, 1, 3, 3]
    assert rows["pointwise.bias"]["tf_variables"] == ["separable/bias"]
    assert rows["transpose.weight"]["transform"] == "(k..., out, in) -> (in, out, k...)"
    assert rows["conv3d.weight"]["torch_shape"] == [3, 2, 2, 2, 2]
    assert all(r["input"].get("passed") is not False for r in port_report(out)["layers"])


def test_same_conv_transpose_as_padding_1_output_padding_1_is_named(models, tmp_path):
    port = PORTS / "layer_zoo_port.py:LayerZooShiftedTranspose"
    done = run_command("verify", models / "layer_zoo.keras", "--torch", port, "--out", tmp_path / "out")
    assert done.returncode == 1, done.stdout + done.stderr
    mapping = port_report(tmp_path / "out")
    [finding] = [f for f in mapping["findings"] if f["torch_module"] == "transpose"]
    assert "shifts the output by one" in finding["message"] and "y[..., :-1, :-1]" in finding["message"]
    assert mapping["first_divergence"].startswith("`transpose` (Keras `transpose`) gets the same input")
