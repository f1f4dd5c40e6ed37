"""TF ops as a third-party model library's layers use them (configs/zoos/kecam.yaml).

tf.image.extract_patches (neighbourhood attention) converts to slices of the input, not to a
convolution whose 0/1 kernel grows with the square of the channels (a 19.5M-parameter transformer's
export ran out of memory on it): the ONNX model holds no float constant, model.py has no parameter,
and nine window positions (more than a converter's usual handful of inputs) still give model.py.
tf.nn.conv2d_transpose with an output longer than the full transposed convolution (VOLO's fold)
exports as ONNX allows it (output_padding, not a negative pad). A Softmax over 6 dimensions (HaloNet,
VOLO), which TF's oneDNN kernels refuse, is named with the way out, `tf_onednn: false`, which works."""

from __future__ import annotations

import onnx
from cli_runner import read_report, run_command

from pipeline import artifacts


def test_patches_are_slices_with_no_weights(models, tmp_path):
    out = tmp_path / "run"
    proc = run_command("convert", models / "patches_savedmodel", "--out", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = read_report(out)
    assert report["status"] == "pass"
    graph = onnx.load(out / artifacts.ONNX_MODEL).graph
    assert "Conv" not in {n.op_type for n in graph.node}
    floats = [t.name for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT]
    assert not floats
    native = next(s for s in report["stages"] if s["name"] == "native")
    assert native["details"]["trainable_elements"] == 0
    assert (out / artifacts.NATIVE_CODE).is_file()


def test_a_transposed_convolution_longer_than_full_exports_with_output_padding(models, tmp_path):
    out = tmp_path / "run"
    proc = run_command("convert", models / "conv_transpose_longer", "--out", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert read_report(out)["status"] == "pass"
    graph = onnx.load(out / artifacts.ONNX_MODEL).graph
    transposed = [n for n in graph.node if n.op_type == "ConvTranspose"]
    assert len(transposed) == 2
    for node in transposed:
        attrs = {a.name: list(a.ints) for a in node.attribute}
        assert min(attrs.get("pads", [0])) >= 0 and max(attrs["output_padding"]) > 0
    assert (out / artifacts.NATIVE_CODE).is_file()


def test_a_shape_tf_onednn_refuses_is_named_and_runs_with_tf_own_kernels(models, tmp_path):
    out = tmp_path / "onednn"
    proc = run_command("convert", models / "six_dim_softmax", "--out", out)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    load = next(s for s in read_report(out)["stages"] if s["name"] == "load")
    assert load["error"].startswith("TensorFlow could not run the model on the seeded inputs")
    assert "tf_onednn: false" in load["error"] and "Traceback" not in load["error"]

    config = tmp_path / "config.yaml"
    config.write_text("tf_onednn: false\n")
    out = tmp_path / "own_kernels"
    proc = run_command("convert", models / "six_dim_softmax", "--config", config, "--out", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert read_report(out)["status"] == "pass"
