"""The native PyTorch model (issue: a PyTorch model people can keep): trainable parameters counted
like Keras counts them, torch.export, a standalone model.py, and the fine-tune smoke."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from cli_runner import read_report, run_command
from standalone_model import input_names, run_standalone
from torch import fx, nn

from pipeline.config import ModelConfig
from pipeline.torch_worker.native import driver
from pipeline.torch_worker.native.context import PassContext

# Trainable element counts computed from the architectures, not read from the code under test.
CNN = 3 * 3 * 1 * 32 + 32 + 13 * 13 * 32 * 10 + 10  # Conv2D(32, 3x3) on 1 channel, Dense(10)
MLP = (10 * 16 + 16) + (16 * 16 + 16) + (16 * 4 + 4)
LSTM = 4 * 64 * (8 + 64 + 1) + (64 + 1)  # Keras LSTM: kernel, recurrent kernel, one bias; Dense(1)
# Keras' published figures for the 1000-class models (keras.io/api/applications): ResNet50 has
# 25,636,712 parameters of which 53,120 are BatchNorm moving statistics; MobileNetV2 3,538,984 / 34,112.
RESNET50 = 25_636_712 - 53_120
MOBILENET_V2 = 3_538_984 - 34_112

FAST = [("demo.cnn", CNN), ("family.mlp", MLP), ("demo.lstm", LSTM)]
APPLICATIONS = [
    ("keras.applications.MobileNetV2", MOBILENET_V2),
    ("keras.applications.ResNet50", RESNET50),
]


def _convert(model: str, out, *extra: str):
    proc = run_command("convert", model, "--out", out, "--train-check", *extra)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return read_report(out)


# What each small model is converted with; the tests below only read the runs, so each runs once.
SMALL_RUN_FLAGS = {"demo.cnn": ("--compile",), "family.mlp": (), "demo.lstm": ()}


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """(run directory, report) of a small model's passing conversion, made on first use."""
    runs: dict[str, tuple] = {}

    def get(model: str):
        if model not in runs:
            out = tmp_path_factory.mktemp(model.replace(".", "_")) / "run"
            runs[model] = (out, _convert(model, out, *SMALL_RUN_FLAGS[model]))
        return runs[model]

    return get


def _stage(report: dict, name: str) -> dict:
    return next(s for s in report["stages"] if s["name"] == name)


def _run_standalone(out, report: dict) -> dict:
    return run_standalone([(out, input_names(report))])


def _check_native_model(out, report: dict, trainable: int) -> None:
    native = _stage(report, "native")
    assert native["status"] == "pass"
    assert native["details"]["trainable_elements"] == trainable
    assert native["details"]["left_as_onnx2torch"] == []
    # The second shape: model.py at another batch size (and every other dimension TF leaves unknown)
    # against TF's own outputs there.
    assert {c["pair"] for c in native["comparisons"]} == {
        "onnx_vs_native",
        "tf_vs_native",
        "tf_vs_native_second_shape",
    }
    assert all(c["passed"] for c in native["comparisons"])

    exported = _stage(report, "torch_export")
    assert exported["status"] == "pass", exported.get("reason")
    assert (out / "model.pt2").is_file()
    low, high = exported["details"]["dynamic_batch_checked"]
    assert high == low + 1  # model.pt2 ran at a batch size it was not exported with
    assert "tf_vs_exported_second_shape" in {c["pair"] for c in exported["comparisons"]}
    assert all(c["passed"] for c in exported["comparisons"])

    train = _stage(report, "train_check")
    assert train["status"] == "pass"
    assert train["details"]["last_loss"] < train["details"]["first_loss"]

    assert _run_standalone(out, report)["imported_blocked"] == []


@pytest.mark.parametrize(("model", "trainable"), FAST, ids=[m for m, _ in FAST])
def test_native_model_of_the_small_models(model, trainable, small_run):
    out, report = small_run(model)
    _check_native_model(out, report, trainable)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "trainable"), APPLICATIONS, ids=[m.split(".")[-1] for m, _ in APPLICATIONS]
)
def test_native_model_of_keras_applications(model, trainable, tmp_path, write_config):
    config = write_config(f"model: {model}\nsamples: 1\ninputs: [{{name: image, shape: [1, 32, 32, 3]}}]\n")
    out = tmp_path / "run"
    proc = run_command("convert", "--config", config, "--out", out, "--train-check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = read_report(out)
    _check_native_model(out, report, trainable)
    # BatchNorm statistics are buffers, gamma and beta parameters, all named after the Keras layers.
    mapped = json.loads((out / "weights_map.json").read_text())
    bn = [row for row in mapped if row["tf"].endswith("moving_variance")]
    assert bn and all(row["torch"].endswith(".running_var") for row in bn)


def test_demo_cnn_reads_like_hand_written_pytorch(small_run):
    out, report = small_run("demo.cnn")
    code = (out / "model.py").read_text()
    for expected in (
        "class ConvertedModel(nn.Module):",
        "self.conv2d = nn.Conv2d(1, 32, 3)",
        "nn.MaxPool2d(",
        "self.dense = nn.Linear(5408, 10)",
        "torch.flatten(",
        "nn.Softmax(",
        "def forward(self, image):",
        # one name through the chain, as a person writes it (and each dead intermediate is freed)
        "        x = self.conv2d(x)\n        x = self.relu(x)\n        x = self.max_pool2d(x)\n",
        "self.relu = nn.ReLU(inplace=True)",  # right after the convolution, which nothing else reads
    ):
        assert expected in code, code
    assert "onnx" not in code.split("# ", 6)[-1].lower()  # no onnx2torch wrappers below the header
    assert "getattr(" not in code
    compiled = [c for c in _stage(report, "torch_compile")["comparisons"] if c["pair"] == "onnx_vs_compiled"]
    assert compiled and compiled[0]["passed"]
    rows = {row["tf"]: row for row in json.loads((out / "weights_map.json").read_text())}
    assert rows["cnn/conv2d/kernel"]["torch"] == "conv2d.weight"
    assert rows["cnn/conv2d/kernel"]["shape"] == [32, 1, 3, 3]
    assert rows["cnn/dense/kernel"]["torch"] == "dense.weight"
    assert rows["cnn/dense/kernel"]["transform"] == "transpose"


def test_lstm_keeps_one_trainable_bias_like_keras(small_run):
    out, report = small_run("demo.lstm")
    train = _stage(report, "train_check")["details"]
    assert train["frozen_tensors"] == ["lstm.bias_hh_l0"]
    code = (out / "model.py").read_text()
    # model.py's LSTM is nn.LSTM (same parameters) whose time loop torch.export takes at any length
    assert "self.lstm = LSTM(8, 64)" in code and "class LSTM(nn.LSTM):" in code
    assert "self.lstm.bias_hh_l0.requires_grad_(False)" in code


def test_a_pass_that_moves_the_outputs_is_reverted():
    """The driver keeps a pass only if onnxruntime's outputs still match; here a pass that scales a
    weight is undone and reported, and the model that comes out computes what came in."""

    class Small(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(3, 2)

        def forward(self, x):
            return torch.relu(self.linear(x))

    torch.manual_seed(0)
    gm = fx.symbolic_trace(Small())
    x = torch.randn(2, 3)
    reference = {"y": gm(x).detach().numpy()}

    def breaks_numbers(module, ctx):
        with torch.no_grad():
            module.linear.weight.mul_(1.01)
        return []

    def renames(module, ctx):
        return ["nothing to rename"]

    ctx = PassContext([x], [torch.cat([x, x[:1]])], None)
    # Alone, and as two passes of one group (verified together; one by one once the group fails).
    for names in (("breaks_numbers", "renames"), driver.GROUPS[-2][:2]):
        passes = tuple(zip(names, (breaks_numbers, renames), strict=True))
        result, log = driver.run_passes(gm, ctx, [[x]], [reference], ["y"], ModelConfig(), passes)
        assert log[0]["status"] == "reverted" and "outputs moved" in log[0]["reason"]
        assert log[1]["status"] == "applied" and log[1]["left_as_is"] == ["nothing to rename"]
        assert np.array_equal(result(x).detach().numpy(), reference["y"])


class _BranchesOnValues(nn.Module):
    """Python control flow on the data: no plain-torch code can stand for it."""

    def forward(self, x):
        return x * 2.0 if float(x.sum()) > 0 else x - 1.0


def test_a_node_without_plain_torch_form_fails_the_stage_and_is_named(tmp_path):
    from pipeline import artifacts
    from pipeline.errors import ConversionError
    from pipeline.torch_worker import native_stage

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(3, 3)
            self.odd = _BranchesOnValues()

        def forward(self, x):
            return self.odd(self.linear(x))

    class KeepOdd(fx.Tracer):
        def is_leaf_module(self, m, qualname):
            return isinstance(m, _BranchesOnValues) or super().is_leaf_module(m, qualname)

    torch.manual_seed(0)
    model = Model().eval()
    gm = fx.GraphModule(model, KeepOdd().trace(model))
    x = torch.rand(2, 2, 3)  # samples x batch x features
    with torch.no_grad():
        y = torch.stack([gm(x[i]) for i in range(2)]).numpy()
    artifacts.save_arrays(tmp_path / artifacts.INPUTS, {"x": x.numpy()})
    artifacts.save_arrays(tmp_path / artifacts.OUTPUTS["onnx"], {"y": y})
    state = {"input_names": ["x"], "output_names": ["y"], "torch_module": gm}
    with pytest.raises(ConversionError) as caught:
        native_stage.native(ModelConfig(model="m"), "keras", tmp_path, state)
    # The terminal line and the report name the node, what it is and why it has no plain-torch form.
    assert caught.value.message.startswith("model.py not written: 1 node(s) have no plain-torch form: ")
    assert "(_BranchesOnValues: cannot be traced to plain torch code" in caught.value.message
    [missing] = caught.value.details["missing"]
    assert "_BranchesOnValues: cannot be traced to plain torch code (TypeError: float()" in missing
    assert caught.value.details["model_py"] == "not written"
    assert not (tmp_path / "model.py").exists() and not (tmp_path / "model.safetensors").exists()


def test_without_the_native_model_there_is_nothing_to_export_or_train(tmp_path, write_config):
    config = write_config("native: false\n")
    out = tmp_path / "run"
    proc = run_command("convert", "demo.linear_regression", "--config", config, "--out", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [s["name"] for s in read_report(out)["stages"]] == ["load", "export", "validate", "import"]
    assert not (out / "model.py").exists()
    proc = run_command("convert", "demo.cnn", "--config", config, "--train-check", "--out", out)
    assert proc.returncode == 2
    assert "train_check needs `native: true`" in proc.stdout + proc.stderr


def _forward_lines(out) -> list[str]:
    code = (out / "model.py").read_text()
    return [line.strip() for line in code.split("def forward", 1)[1].splitlines()[1:] if line.strip()]


def test_layout_nchw_gives_the_cnn_an_nchw_input_without_transposes_at_the_ends(tmp_path):
    import onnx

    out = tmp_path / "run"
    proc = run_command("convert", "demo.cnn", "--layout", "nchw", "--out", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = read_report(out)
    # samples 3 and batch 2 by default; the 28x28 grey image as (channels, height, width)
    assert np.load(out / "inputs.npz")["image"].shape == (3, 2, 1, 28, 28)
    graph = onnx.load(str(out / "model.onnx")).graph
    assert [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim][1:] == [1, 28, 28]
    assert _forward_lines(out)[0] == "x = self.conv2d(image)"
    load = _stage(report, "load")["details"]["layout"]
    assert load == {"layout": "nchw", "nchw_inputs": ["image"], "nchw_outputs": []}
    assert "Layout: nchw." in (out / "report.md").read_text()
    assert all(c["passed"] for s in report["stages"] for c in s["comparisons"])


def test_layout_nchw_without_an_image_input_is_a_usage_error(tmp_path):
    proc = run_command("convert", "family.mlp", "--layout", "nchw", "--out", tmp_path / "run")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "`layout: nchw` needs an image input" in proc.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_layout_nchw_removes_every_transpose_from_mobilenet_v2(tmp_path, write_config):
    import onnx

    config = write_config(
        "model: keras.applications.MobileNetV2\nsamples: 1\nlayout: nchw\n"
        "inputs: [{name: image, shape: [1, 32, 32, 3]}]\n"
    )
    out = tmp_path / "run"
    proc = run_command("convert", "--config", config, "--out", out, "--train-check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    graph = onnx.load(str(out / "model.onnx")).graph
    assert "Transpose" not in {n.op_type for n in graph.node}
    assert "permute" not in "\n".join(_forward_lines(out))
    _check_native_model(out, read_report(out), MOBILENET_V2)


def test_layout_nchw_is_refused_for_tflite_models(models, tmp_path):
    out = tmp_path / "run"
    proc = run_command("convert", models / "small.tflite", "--layout", "nchw", "--out", out)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "`layout: nchw` is not supported for TFLite models" in proc.stdout
    assert not (out / "model.onnx").exists()


@pytest.mark.parametrize("model", ["family.global_max_pooling", "family.top_k"])
def test_model_py_covers_pooling_and_top_k(model, tmp_path):
    """AdaptiveMaxPool modules, `.values`/`.indices` of torch.topk and several outputs in model.py."""
    out = tmp_path / "run"
    proc = run_command("convert", model, "--out", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = read_report(out)
    assert _stage(report, "native")["details"]["model_py"] == "model.py + model.safetensors"
    assert _run_standalone(out, report)["imported_blocked"] == []


class _Reductions(nn.Module):
    """ONNX ReduceMean/ReduceMax keeping their dims, then Squeezes: some of exactly those dims."""

    def forward(self, x):
        pooled = torch.squeeze(torch.squeeze(torch.mean(x, dim=[2, 3], keepdim=True), dim=3), dim=2)
        last = torch.squeeze(torch.amax(x, dim=-1, keepdim=True), dim=-1)  # negative dims
        other = torch.squeeze(torch.amax(x, dim=-2, keepdim=True), dim=3)  # dim -2 is 2: 3 stays
        partial = torch.squeeze(torch.sum(x, dim=[1, 2], keepdim=True), dim=2)  # one of the two dims
        kept = torch.mean(x, dim=[3], keepdim=True)
        return (
            pooled,
            last,
            other,
            partial,
            kept * torch.squeeze(kept, dim=3).unsqueeze(3),
        )  # kept: read twice


def test_a_reduction_then_squeezes_of_its_dims_reads_as_one_call():
    from pipeline.torch_worker.native import tidy_ops

    torch.manual_seed(0)
    gm = fx.symbolic_trace(_Reductions())
    x = torch.randn(2, 3, 4, 5)
    expected = gm(x)
    tidy_ops.squeezed_reductions(gm, PassContext([x], [torch.randn(3, 3, 4, 5)], None))
    keepdim = {n.name: n.kwargs.get("keepdim") for n in gm.graph.nodes if n.op == "call_function"}
    assert keepdim["mean"] is None and keepdim["amax"] is None  # squeezed: the default, not written
    assert keepdim["sum_1"] is True and keepdim["mean_1"] is True and keepdim["amax_1"] is True
    # Left: squeezes of another dim, of one of the two dims, and of a mean another node reads.
    assert sum(n.target is torch.squeeze for n in gm.graph.nodes) == 3
    for got, want in zip(gm(x), expected, strict=True):
        assert torch.equal(got, want)


class _Paddings(nn.Module):
    """Zero padding in front of the layers TF pads for: each case of tidy_ops.fold_padding."""

    def __init__(self):
        super().__init__()
        self.even = nn.Conv2d(3, 4, 3)  # symmetric padding: the conv's own
        self.depthwise = nn.Conv2d(3, 6, 3, stride=2, groups=3)  # TF 'same', stride 2: ZeroPadConv2d
        self.full = nn.Conv2d(3, 4, 3, stride=2)  # uneven before a full conv: stays a pad
        self.relu = nn.ReLU()
        self.pool_of_relu = nn.MaxPool2d(3, stride=2)  # no negative value to pad: the pool's padding
        self.pool = nn.MaxPool2d(3, stride=2)  # of negative values: zeros are not -inf, stays a pad

    def forward(self, x):
        return (
            self.even(F.pad(x, [1, 1, 1, 1])),
            self.depthwise(F.pad(x, [0, 1, 0, 1])),
            self.full(F.pad(x, [0, 1, 0, 1])),
            self.pool_of_relu(F.pad(self.relu(x), [1, 1, 1, 1])),
            self.pool(F.pad(x, [1, 1, 1, 1])),
        )


def test_zero_padding_goes_into_the_layer_after_it_where_that_computes_the_same():
    from pipeline.torch_worker.native import tidy_ops
    from pipeline.torch_worker.native.zero_pad_conv import ZeroPadConv2d

    torch.manual_seed(0)
    gm = fx.symbolic_trace(_Paddings())
    x = torch.randn(2, 3, 10, 10)
    expected = gm(x)
    tidy_ops.fold_padding(gm, PassContext([x], [torch.randn(3, 3, 10, 10)], None))
    gm.recompile()
    assert gm.even.padding == (1, 1)
    assert isinstance(gm.depthwise, ZeroPadConv2d) and gm.depthwise.pad == (0, 1, 0, 1)
    assert gm.pool_of_relu.padding == (1, 1) and gm.pool.padding == 0
    pads = [m for m in gm.modules() if isinstance(m, nn.ZeroPad2d)]
    assert sorted(p.padding for p in pads) == [(0, 1, 0, 1), (1, 1, 1, 1)]  # the full conv's, the pool's
    for got, want in zip(gm(x), expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


def test_every_torch_nn_activation_module_is_written_into_model_py(models, tmp_path):
    """onnx2torch imports Softplus, Softsign, LogSoftmax (and Mish as x * tanh(softplus(x))) as
    torch.nn modules: model.py writes each as its constructor call, not a refusal."""
    out = tmp_path / "run"
    proc = run_command("convert", models / "activations.keras", "--out", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    code = (out / "model.py").read_text()
    for written in ("nn.Softplus()", "nn.Softsign()", "nn.LogSoftmax(dim=-1)", "nn.ELU()"):
        assert written in code, code
