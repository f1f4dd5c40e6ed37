"""Models as applications ship them (issue 33): an output that is a constant, in every format with a
graph (SavedModel, frozen graph, .tflite), and a .tflite whose batch is fixed at 1 with TFLite's
PReLU. Each converts end to end with a model.py, and model.pt2 is exported and checked at the
model's own batch. A .tflite with sparse (pruned) weights converts with them made dense."""

from __future__ import annotations

import numpy as np
import pytest
from cli_runner import read_report, run_command

from pipeline import artifacts

FROZEN_CONFIG = "inputs:\n  - name: x:0\noutputs: [scaled:0, steps:0]\n"
CONSTANT_OUTPUT_MODELS = {
    "saved_model": ("constant_output_savedmodel", None),
    "frozen_graph": ("constant_output.pb", FROZEN_CONFIG),
    "tflite": ("constant_output.tflite", None),
}


def _convert(models, tmp_path, name, config_text=None):
    out = tmp_path / "run"
    args = [models / name, "--out", out]
    if config_text:
        config = tmp_path / "config.yaml"
        config.write_text(config_text)
        args += ["--config", config]
    return run_command("convert", *args), out


def _stage(report: dict, name: str) -> dict:
    return next(s for s in report["stages"] if s["name"] == name)


@pytest.mark.parametrize("fmt", CONSTANT_OUTPUT_MODELS)
def test_a_constant_output_converts_in_every_format(models, tmp_path, fmt):
    name, config_text = CONSTANT_OUTPUT_MODELS[fmt]
    proc, out = _convert(models, tmp_path, name, config_text)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = read_report(out)
    assert report["status"] == "pass"
    assert (out / artifacts.NATIVE_CODE).is_file()
    tf_outputs = artifacts.load_arrays(out / artifacts.OUTPUTS["tf"])
    # the constant output: [samples, 5] (a .tflite names its outputs after its signature's positions)
    (name,) = [k for k, v in tf_outputs.items() if v.shape[1:] == (5,)]
    assert np.array_equal(tf_outputs[name][0], np.arange(5, dtype=np.float32))
    exported = artifacts.load_arrays(out / artifacts.OUTPUTS["exported"])
    assert np.array_equal(exported[name], tf_outputs[name])


def test_a_fixed_batch_tflite_passes_with_model_py_and_its_export_at_that_batch(models, tmp_path):
    proc, out = _convert(models, tmp_path, "landmarks_batch1.tflite")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = read_report(out)
    assert report["status"] == "pass"
    native = (out / artifacts.NATIVE_CODE).read_text()
    assert "torch.where(" in native  # TFLite's PReLU, as plain torch code
    details = _stage(report, "torch_export")["details"]
    assert details["fixed_batch"] == 1 and "dynamic_batch_checked" not in details
    assert not any(details["dynamic_dims"].values())


def test_sparse_tflite_weights_convert_dense(models, tmp_path):
    proc, out = _convert(models, tmp_path, "sparse_weights.tflite")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = read_report(out)
    assert report["status"] == "pass"
    # the convolution's CSR channels and the Dense layer's 1x4 blocks
    assert _stage(report, "export")["details"]["sparse_weights_densified"] == 2


APP_OPS_FILE = """import struct

import numpy as np

from pipeline.tflite_custom_ops import custom_op


@custom_op("AppScale")
def app_scale(op):
    (factor,) = struct.unpack("<f", op.options)
    op.emit("MUL", [op.inputs[0], op.constant(np.array([factor], np.float32))], op.outputs)
"""


def test_an_app_custom_op_is_named_and_converts_once_its_meaning_is_given(models, tmp_path):
    """relu(x * 3.5) whose MUL is the app's custom op AppScale: refused by name, with the way out;
    with a tflite_custom_ops file giving its builtin form, it converts and the report says the
    reference ran on that form."""
    proc, out = _convert(models, tmp_path / "without", "app_custom_op.tflite")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    load = _stage(read_report(out), "load")
    assert load["status"] == "error"
    assert "AppScale" in load["error"] and "tflite_custom_ops" in load["error"]

    (tmp_path / "with").mkdir()
    (tmp_path / "with" / "app_ops.py").write_text(APP_OPS_FILE)
    proc, out = _convert(
        models, tmp_path / "with", "app_custom_op.tflite", "tflite_custom_ops: [app_ops.py]\n"
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = read_report(out)
    assert report["status"] == "pass"
    assert _stage(report, "export")["details"]["custom_ops_in_builtin_form"] == {"AppScale": 1}
    assert any("AppScale" in w for w in report["warnings"])
    # The reference is the op's meaning, not only the conversion agreeing with its own rewrite.
    (x,) = artifacts.load_arrays(out / artifacts.INPUTS).values()
    (y,) = artifacts.load_arrays(out / artifacts.OUTPUTS["tf"]).values()
    np.testing.assert_allclose(y, np.maximum(x * 3.5, 0.0), rtol=1e-6)
    assert (out / artifacts.NATIVE_CODE).is_file()
