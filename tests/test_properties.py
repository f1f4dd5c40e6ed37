"""Property-based tests (hypothesis) for the two pieces every verdict rests on: the output comparison
and the config loader. Numpy and the loader only; no framework runs here."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pipeline.compare import StructureMismatch, compare_arrays
from pipeline.config import ModelConfig, ResolvedTolerance, load_config
from pipeline.errors import ConfigError

FLOAT_DTYPES = st.sampled_from([np.float16, np.float32, np.float64])
# Denormals, signed zeros, NaN and both infinities are all in play.
ANY_FLOAT = {"allow_nan": True, "allow_infinity": True, "allow_subnormal": True}
tolerances = st.builds(
    ResolvedTolerance,
    atol=st.floats(0, 1e3, allow_subnormal=True),
    rtol=st.floats(0, 1e3, allow_subnormal=True),
    max_mismatch=st.just(0.0),
    stat=st.just("elementwise"),
)
any_stat_tolerances = st.builds(
    ResolvedTolerance,
    atol=st.floats(0, 1e3, allow_subnormal=True),
    rtol=st.floats(0, 1e3, allow_subnormal=True),
    max_mismatch=st.floats(0, 1),
    stat=st.sampled_from(["elementwise", "max", "p99", "mean"]),
)


@st.composite
def float_arrays(draw, shape=None, dtype=None):
    dtype = dtype or draw(FLOAT_DTYPES)
    shape = (
        shape if shape is not None else draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5))
    )
    return draw(hnp.arrays(dtype, shape, elements=st.floats(width=np.finfo(dtype).bits, **ANY_FLOAT)))


@given(float_arrays(), any_stat_tolerances)
def test_an_array_always_matches_itself(array, tol):
    result = compare_arrays(array, array.copy(), tol)
    assert result["passed"]
    assert result["max_abs_diff"] == 0.0 and result["mismatched_elements"] == 0


@given(float_arrays(), any_stat_tolerances)
def test_every_reported_figure_is_a_finite_number_or_none(array, tol):
    # Reports are JSON: a NaN figure would be written as an invalid token.
    other = np.flip(array).copy()
    result = compare_arrays(array, other, tol)
    for key, value in result.items():
        if isinstance(value, float):
            assert math.isfinite(value) or key in ("atol", "rtol"), (key, value)


@given(st.data(), FLOAT_DTYPES)
def test_shapes_that_only_broadcast_are_a_structure_mismatch_never_a_pass(data, dtype):
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4))
    other = data.draw(hnp.broadcastable_shapes(shape, min_dims=0, max_dims=4, min_side=1, max_side=4))
    assume(tuple(other) != tuple(shape))
    reference = np.zeros(shape, dtype)
    with pytest.raises(StructureMismatch):
        compare_arrays(
            reference, np.zeros(other, dtype), ResolvedTolerance(atol=1e9, rtol=1e9, max_mismatch=1)
        )


@given(st.data(), tolerances)
def test_elementwise_verdict_is_the_rule_applied_to_each_element(data, tol):
    """Against an independent oracle: Python floats, one element at a time."""
    reference = data.draw(float_arrays(dtype=np.float64))
    candidate = data.draw(float_arrays(shape=reference.shape, dtype=np.float64))
    expected = True
    for r, c in zip(reference.ravel().tolist(), candidate.ravel().tolist(), strict=True):
        if math.isnan(r) or math.isnan(c) or math.isinf(r) or math.isinf(c):
            ok = (math.isnan(r) and math.isnan(c)) or r == c
        else:
            ok = abs(c - r) <= tol.atol + tol.rtol * abs(r)
        expected &= ok
    with np.errstate(over="ignore", invalid="ignore"):
        assert compare_arrays(reference, candidate, tol)["passed"] == expected


@given(st.data(), any_stat_tolerances)
def test_nan_or_inf_on_one_side_only_never_passes(data, tol):
    reference = data.draw(float_arrays(dtype=np.float32))
    assume(reference.size > 0)
    index = data.draw(st.integers(0, reference.size - 1))
    bad = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    reference = np.array(np.nan_to_num(reference, nan=0.0, posinf=1.0, neginf=-1.0), np.float32)
    candidate = reference.copy()
    candidate.flat[index] = bad
    tol = tol.model_copy(update={"max_mismatch": 0.0})
    assert not compare_arrays(reference, candidate, tol)["passed"]
    assert not compare_arrays(candidate, reference, tol)["passed"]


@given(st.data(), tolerances, st.floats(1, 100), st.floats(1, 100))
def test_a_looser_tolerance_never_fails_what_a_tighter_one_passed(data, tol, grow_atol, grow_rtol):
    reference = data.draw(float_arrays(dtype=np.float32))
    noise = data.draw(float_arrays(shape=reference.shape, dtype=np.float32))
    looser = tol.model_copy(update={"atol": tol.atol * grow_atol, "rtol": tol.rtol * grow_rtol})
    with np.errstate(over="ignore", invalid="ignore"):
        candidate = (reference + np.nan_to_num(noise) * np.float32(1e-6)).astype(np.float32)
        if compare_arrays(reference, candidate, tol)["passed"]:
            assert compare_arrays(reference, candidate, looser)["passed"]


@given(st.sampled_from([np.float16, np.float32, np.float64]), st.integers(1, 4))
def test_denormal_differences_follow_atol(dtype, count):
    tiny = np.finfo(dtype).smallest_subnormal
    reference = np.zeros(count, dtype)
    candidate = np.full(count, tiny, dtype)
    assert compare_arrays(reference, candidate, ResolvedTolerance(atol=1e-30, rtol=0, max_mismatch=0))[
        "passed"
    ] == (float(tiny) <= 1e-30)
    assert not compare_arrays(reference, candidate, ResolvedTolerance(atol=0, rtol=0, max_mismatch=0))[
        "passed"
    ]


@given(FLOAT_DTYPES, st.lists(st.integers(0, 3), min_size=1, max_size=3), any_stat_tolerances)
def test_empty_tensors_pass_when_shapes_agree(dtype, dims, tol):
    shape = (*dims[:-1], 0)
    assert compare_arrays(np.zeros(shape, dtype), np.zeros(shape, dtype), tol)["passed"]


# --- config parsing ---------------------------------------------------------------------------------

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
_documents = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=10), st.integers()), children, max_size=4),
    ),
    max_leaves=20,
)
# Documents built from the real keys get past the unknown-key check and into each field's validation.
_known_keys = st.sampled_from(sorted(ModelConfig.model_fields))
_tolerance_docs = st.dictionaries(
    st.sampled_from(["default", "tf_vs_onnx", "onnx_vs_torch", "outputs", "typo"]),
    st.one_of(
        _documents,
        st.dictionaries(st.sampled_from(["atol", "rtol", "max_mismatch", "stat", "x"]), _scalars, max_size=4),
    ),
    max_size=3,
)
_near_valid = st.dictionaries(_known_keys, st.one_of(_documents, _tolerance_docs), max_size=5)

SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _load(path: Path, text: str) -> None:
    path.write_text(text)
    try:
        load_config(path)
    except ConfigError as exc:
        assert exc.exit_code == 2 and exc.message.strip()


@SETTINGS
@given(st.one_of(_documents, _near_valid))
def test_any_yaml_document_validates_or_is_rejected_with_exit_2(tmp_path, document):
    _load(tmp_path / "config.yaml", yaml.safe_dump(document, allow_unicode=True))


@SETTINGS
@given(st.text(max_size=200))
def test_any_text_validates_or_is_rejected_with_exit_2(tmp_path, text):
    _load(tmp_path / "config.yaml", text)


@SETTINGS
@given(st.binary(max_size=200))
def test_any_bytes_are_rejected_or_read_never_a_crash(tmp_path, data):
    path = tmp_path / "config.yaml"
    path.write_bytes(data)
    try:
        load_config(path)
    except ConfigError as exc:
        assert exc.exit_code == 2


@pytest.mark.parametrize(
    "text",
    [
        "a: &x [*x]\n",  # a list that contains itself
        "tolerances: &t {default: *t}\n",
        "samples: !!python/object/apply:os.system ['true']\n",
        "? [a, b]\n: 1\n",
        "inputs: [{name: x, shape: [1e400]}]\n",
    ],
)
def test_hostile_yaml_is_rejected_with_exit_2(tmp_path, text):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.exit_code == 2
