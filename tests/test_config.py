import pytest

from pipeline.config import ModelConfig, load_config, resolve_tolerance
from pipeline.errors import ConfigError


def test_with_no_file_the_config_is_the_models_defaults():
    assert load_config() == ModelConfig()


def test_a_file_may_set_part_of_a_nested_default(write_config):
    cfg = load_config(write_config("tolerances:\n  default: {atol: 1.0e-3}\n"))
    assert cfg.tolerances.default.atol == 1e-3
    assert cfg.tolerances.default.rtol == ModelConfig().tolerances.default.rtol


def test_model_config_overrides_defaults_and_cli_overrides_both(write_config):
    path = write_config("opset: 15\nsamples: 5\ntolerances:\n  tf_vs_torch: {atol: 1.0e-3}\n")
    cfg = load_config(path, {"opset": 13})
    assert (cfg.opset, cfg.samples) == (13, 5)
    assert cfg.tolerances.default.rtol == 1e-4  # untouched default survives the deep merge
    assert cfg.tolerances.tf_vs_torch.atol == 1e-3


def test_tolerance_resolution_most_specific_wins(write_config):
    path = write_config(
        "tolerances:\n"
        "  default: {atol: 1.0e-5, rtol: 1.0e-4}\n"
        "  tf_vs_torch: {atol: 1.0e-4}\n"
        "  outputs: {logits: {atol: 1.0e-3, max_mismatch: 0.01}}\n"
    )
    t = load_config(path).tolerances
    assert resolve_tolerance(t, "tf_vs_onnx", "probs").model_dump() == {
        "atol": 1e-5,
        "rtol": 1e-4,
        "max_mismatch": 0,
        "stat": "elementwise",
    }
    assert resolve_tolerance(t, "tf_vs_torch", "probs").atol == 1e-4
    logits = resolve_tolerance(t, "tf_vs_torch", "logits")
    assert (logits.atol, logits.rtol, logits.max_mismatch) == (1e-3, 1e-4, 0.01)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tolerence: {}\n", ["unknown key 'tolerence'", "did you mean 'tolerances'"]),
        (
            "tolerances:\n  default: {atoll: 1}\n",
            ["tolerances.default.atoll", "did you mean 'atol'", "allowed here: atol"],
        ),
        (
            "tolerances:\n  outputs: {logits: {rtool: 1}}\n",
            ["tolerances.outputs.logits.rtool", "did you mean 'rtol'"],
        ),
        (
            "tolerances:\n  tf_vs_onnx: {atol: -1.0}\n",
            ["tolerances.tf_vs_onnx.atol", "greater than or equal to 0"],
        ),
        ("samples: many\n", ["key 'samples'", "valid integer"]),
        ("inputs:\n  - {name: x, dtype: float33}\n", ["inputs.0.dtype", "float32"]),
        ("inputs:\n  - {name: x, range: [1, 0]}\n", ["inputs.0", "low < high"]),
        ("format: onnx\n", ["key 'format'", "saved_model"]),
        ("opset: 30\n", ["key 'opset'", "18"]),
        ("- just\n- a list\n", ["expected a mapping"]),
        ("a: [unclosed\n", ["not valid YAML"]),
    ],
)
def test_bad_configs_are_rejected_with_file_key_and_what_is_allowed(write_config, text, expected):
    path = write_config(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = info.value.message
    assert info.value.exit_code == 2
    for fragment in expected:
        assert fragment in message
    if "YAML" not in message and "mapping" not in message:
        assert str(path) in message


def test_missing_config_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_model_path_in_a_config_is_relative_to_the_config_file(tmp_path, write_config):
    (tmp_path / "m.keras").write_bytes(b"PK")
    cfg = load_config(write_config("model: m.keras\n"))
    assert cfg.model == str(tmp_path / "m.keras")
