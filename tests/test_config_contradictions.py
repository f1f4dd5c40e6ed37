"""A config that contradicts the model is the user's mistake: exit 2 with the key, the value, what the
model expects and what to write, before any stage computes anything, and nothing written to --out.
Named cases first, then a property test that breaks one field of a valid config in any way the
schema allows."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml
from cli_runner import run_command
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.common.inputs import TensorInfo, generate, resolve_specs
from pipeline.config import DTYPES

# The test models' inputs as their files declare them (tests/build_models.py).
TWO_INPUTS = {
    "file": "two_inputs.keras",
    "inputs": [
        {"name": "zeta", "shape": [2, 6], "dtype": "float32", "fixed": {1: 6}},
        {"name": "alpha", "shape": [2, 8, 8, 3], "dtype": "float32", "fixed": {1: 8, 2: 8, 3: 3}},
    ],
}
DICT_INPUTS = {  # token_ids feeds Embedding(20, 8) directly: ids 0..19
    "file": "dict_inputs.keras",
    "inputs": [
        {
            "name": "token_ids",
            "shape": [2, 5],
            "dtype": "int32",
            "fixed": {},
            "range": [0, 20],
            "vocabulary": 20,
        },
        {"name": "padding_mask", "shape": [2, 5], "dtype": "int32", "fixed": {}, "range": [0, 2]},
    ],
}


def convert(models: Path, model: dict, inputs: list[dict], tmp_path: Path):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"inputs": inputs}))
    out = tmp_path / "run"
    return run_command("convert", models / model["file"], "--config", config, "--out", out), out


def valid_inputs(model: dict) -> list[dict]:
    keys = ("name", "shape", "dtype", "range")
    return copy.deepcopy([{k: v for k, v in spec.items() if k in keys} for spec in model["inputs"]])


def refused(proc, out: Path, key: str) -> None:
    """Exit 2, the key named, no traceback, nothing under --out."""
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert re.search(key, proc.stderr), (key, proc.stderr)
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not out.exists(), sorted(p.name for p in out.iterdir())


def test_an_int_dtype_for_a_float_input_exits_2_naming_the_key(models, tmp_path):
    inputs = valid_inputs(TWO_INPUTS)
    inputs[0]["dtype"] = "int32"
    proc, out = convert(models, TWO_INPUTS, inputs, tmp_path)
    refused(proc, out, r"`inputs\[0\]\.dtype: int32` contradicts the model")
    assert (
        "takes float32 (int values fed to a float input" in proc.stderr
        and "write `dtype: float32`" in proc.stderr
    )


def test_a_zero_size_in_a_shape_exits_2_before_any_work(models, tmp_path):
    inputs = valid_inputs(TWO_INPUTS)
    inputs[1]["shape"] = [2, 0, 8, 3]
    proc, out = convert(models, TWO_INPUTS, inputs, tmp_path)
    refused(proc, out, r"inputs\.1\.shape.*every dimension must be at least 1")
    assert proc.stdout == ""  # refused when the config was read: no stage started


def test_token_ids_past_the_embedding_table_exit_2_with_the_vocabulary(models, tmp_path):
    inputs = valid_inputs(DICT_INPUTS)
    inputs[0]["range"] = [0, 100]
    proc, out = convert(models, DICT_INPUTS, inputs, tmp_path)
    refused(proc, out, r"`inputs\[0\]\.range: \[0, 100\]` goes past the vocabulary")
    assert "20 rows: ids 0..19" in proc.stderr and "write `range: [0, 20]`" in proc.stderr


def test_without_a_range_token_ids_stay_inside_a_small_vocabulary():
    # The default integer range [0, 10) is cut to the table's rows when the table is smaller.
    small = TensorInfo("ids", "int32", (None, 4), vocabulary=5)
    large = TensorInfo("ids", "int32", (None, 4), vocabulary=20)
    assert (resolve_specs([small], None, 2)[0].low, resolve_specs([small], None, 2)[0].high) == (0.0, 5.0)
    assert resolve_specs([large], None, 2)[0].high == 10.0
    drawn = generate(resolve_specs([small], None, 2), seed=0, samples=50)["ids"]
    assert drawn.min() >= 0 and drawn.max() <= 4


@st.composite
def one_field_wrong(draw):
    """(model, inputs, the key the message must name) with exactly one field contradicting the model."""
    model = draw(st.sampled_from([TWO_INPUTS, DICT_INPUTS]))
    inputs = valid_inputs(model)
    index = draw(st.integers(0, len(inputs) - 1))
    spec, declared = inputs[index], model["inputs"][index]
    kinds = ["dtype", "rank", "name"] + (["fixed"] if declared["fixed"] else [])
    kinds += ["int_range"] if declared["dtype"].startswith("int") else ["float_range"]
    kind = draw(st.sampled_from(kinds))
    key = rf"inputs\[{index}\]\.{kind.split('_')[-1]}"
    if kind == "dtype":
        spec["dtype"] = draw(st.sampled_from([d for d in DTYPES if d != declared["dtype"]]))
    elif kind == "rank":
        rank = draw(st.integers(1, 6).filter(lambda r: r != len(declared["shape"])))
        spec["shape"] = draw(st.lists(st.integers(1, 9), min_size=rank, max_size=rank))
        key = rf"inputs\[{index}\]\.shape"
    elif kind == "fixed":
        axis = draw(st.sampled_from(sorted(declared["fixed"])))
        spec["shape"][axis] = draw(st.integers(1, 64).filter(lambda n: n != declared["fixed"][axis]))
        key = rf"inputs\[{index}\]\.shape"
    elif kind == "name":
        names = {s["name"] for s in model["inputs"]}
        spec["name"] = draw(
            st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12).filter(lambda n: n not in names)
        )
        key = r"config `inputs` names .* but the model's inputs are"
    elif kind == "int_range":
        top = declared.get("vocabulary") or 2**31
        spec["range"] = draw(
            st.one_of(
                st.tuples(st.integers(0, top - 1), st.integers(top + 1, 2**40)),  # past the table / the dtype
                st.tuples(st.integers(-(2**40), -(2**31) - 1), st.integers(0, 5)),  # below the dtype
                st.tuples(st.floats(0.1, 0.9), st.integers(3, 5)),  # not a whole number
            ).map(list)
        )
    else:  # float_range: past what float32 holds
        spec["range"] = draw(st.tuples(st.floats(-1.0, 0.0), st.floats(1e39, 1e300)).map(list))
    return model, inputs, key


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=one_field_wrong())
def test_one_field_contradicting_the_model_always_exits_2_naming_it(models, tmp_path_factory, case):
    model, inputs, key = case
    proc, out = convert(models, model, inputs, tmp_path_factory.mktemp("contradiction"))
    refused(proc, out, key)
