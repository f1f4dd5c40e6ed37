"""Models whose inputs are not a functional graph's named tensors: a subclassed keras.Model, and inputs
that users know by another name (a SavedModel signature's tensor name, a TFLite signature's key)."""

from __future__ import annotations

import pytest
from cli_runner import REPO, read_report, run_command

from pipeline.common.inputs import TensorInfo, resolve_specs
from pipeline.config import InputSpec
from pipeline.errors import ConfigError

TFLITE_IMAGE = TensorInfo("serving_default_image:0", "float32", (None, 8, 8, 3), ("image",))


def test_an_input_can_be_configured_by_any_of_its_names():
    for name in ("image", "serving_default_image:0"):
        (spec,) = resolve_specs([TFLITE_IMAGE], [InputSpec(name=name, shape=[3, 8, 8, 3])], batch_size=2)
        assert spec.name == "serving_default_image:0" and spec.shape == (3, 8, 8, 3)


def test_naming_one_input_twice_or_an_unknown_name_is_a_config_error():
    twice = [InputSpec(name="image", shape=[3, 8, 8, 3]), InputSpec(name="serving_default_image:0")]
    with pytest.raises(ConfigError, match="names the input 'serving_default_image:0' twice"):
        resolve_specs([TFLITE_IMAGE], twice, batch_size=2)
    with pytest.raises(ConfigError, match=r"serving_default_image:0 \(or image\) \[\?, 8, 8, 3\]"):
        resolve_specs([TFLITE_IMAGE], [InputSpec(name="picture")], batch_size=2)


def test_a_saved_model_input_can_be_named_by_its_signature_tensor(models, write_config, tmp_path):
    config = write_config(
        "inputs:\n  - {name: 'serving_default_x:0', shape: [3, 4]}\n  - {name: serving_default_bias, shape: [3, 3]}\n"
    )
    proc = run_command("convert", models / "affine_savedmodel", "--config", config, "--out", tmp_path / "run")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    resolved = {
        i["name"]: i["shape"] for i in read_report(tmp_path / "run")["stages"][0]["details"]["inputs"]
    }
    assert resolved == {"x": [3, 4], "bias": [3, 3]}


def test_a_saved_subclassed_keras_model_converts_with_its_call_argument_as_input(
    models, write_config, tmp_path
):
    source = REPO / "tests" / "subclassed_classifier.py"
    config = write_config(f"custom_objects: [{source}]\ninputs: [{{name: image, shape: [2, 9, 7, 3]}}]\n")
    proc = run_command("convert", models / "subclassed.keras", "--config", config, "--out", tmp_path / "run")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    inputs = read_report(tmp_path / "run")["stages"][0]["details"]["inputs"]
    assert [(i["name"], i["shape"]) for i in inputs] == [("image", [2, 9, 7, 3])]


def test_a_keras_model_built_on_a_dict_of_inputs_converts(models, write_config, tmp_path):
    """KerasHub backbones are functional models on a dict of inputs: called with a list, Keras refuses."""
    config = write_config(
        "inputs:\n  - {name: token_ids, shape: [2, 7], range: [0, 20]}\n"
        "  - {name: padding_mask, shape: [2, 7], range: [0, 2]}\n"
    )
    out = tmp_path / "run"
    proc = run_command("convert", models / "dict_inputs.keras", "--config", config, "--out", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = read_report(out)
    assert sorted(i["name"] for i in report["inputs"]) == ["padding_mask", "token_ids"]
    stages = {s["name"]: s for s in report["stages"]}
    assert stages["native"]["status"] == "pass" and stages["torch_export"]["status"] == "pass"
    # the sequence length stays dynamic: checked at a second length against TF
    assert "tf_vs_native_second_shape" in {c["pair"] for c in stages["native"]["comparisons"]}
