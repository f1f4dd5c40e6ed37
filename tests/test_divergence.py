"""The culprit rule and layout alignment of pipeline/torch_worker/divergence.py, on small hand-made graphs."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.config import ResolvedTolerance
from pipeline.torch_worker.divergence import GraphNode, align, find_culprit, tensor_errors

TOL = ResolvedTolerance(atol=1e-5, rtol=1e-4, max_mismatch=0.0)

# x -> A(Relu) -> a -> B(Mul) -> b -> C(Add with a) -> c (output)
CHAIN = [
    GraphNode("A", "Relu", ("x",), ("a",)),
    GraphNode("B", "Mul", ("a", "w"), ("b",)),
    GraphNode("C", "Add", ("b", "a"), ("c",)),
]


def errors_for(passing: dict[str, bool]) -> dict[str, dict]:
    return {v: {"passed": ok, "max_abs_diff": 0.0 if ok else 1.0} for v, ok in passing.items()}


def test_the_first_node_with_passing_inputs_and_a_failing_output_is_the_culprit():
    errors = errors_for({"x": True, "a": True, "b": False, "c": False})
    culprit = find_culprit(CHAIN, errors, ["c"])
    assert culprit["node"] == "B"
    assert [i["value"] for i in culprit["inputs"]] == ["a"]  # w, an initializer, is not compared
    assert [row["value"] for row in culprit["path"]] == ["x", "a", "b", "c"]


def test_a_node_downstream_of_a_failure_is_not_blamed():
    # C fails too, but one of its inputs (b) already failed: B stays the culprit.
    errors = errors_for({"x": True, "a": True, "b": False, "c": False})
    assert find_culprit(CHAIN[1:], errors, ["c"])["node"] == "B"


def test_values_only_one_side_has_are_looked_through():
    # `a` has no counterpart (tf2onnx made it up): B's inputs are judged by what `a` came from.
    errors = errors_for({"x": True, "b": False, "c": False})
    culprit = find_culprit(CHAIN, errors, ["c"])
    assert culprit["node"] == "B"
    assert [i["value"] for i in culprit["inputs"]] == ["x"]


def test_no_culprit_when_everything_passes():
    assert find_culprit(CHAIN, errors_for({"x": True, "a": True, "b": True, "c": True}), ["c"]) is None


def test_channels_first_values_are_aligned_to_channels_last():
    nhwc = np.random.default_rng(0).normal(size=(2, 5, 7, 3)).astype(np.float32)
    nchw = np.transpose(nhwc, (0, 3, 1, 2))
    aligned, permutation = align(nhwc, nchw)
    assert permutation == (0, 2, 3, 1)
    np.testing.assert_array_equal(aligned, nhwc)


def test_equal_dimensions_pick_the_permutation_that_matches():
    # (2, 4, 4, 4): several permutations fit the shape; only the true one matches the values.
    nhwc = np.random.default_rng(1).normal(size=(2, 4, 4, 4)).astype(np.float32)
    aligned, permutation = align(nhwc, np.transpose(nhwc, (0, 3, 1, 2)))
    assert permutation == (0, 2, 3, 1)
    np.testing.assert_array_equal(aligned, nhwc)


@pytest.mark.parametrize(
    "reference, candidate",
    [(np.zeros((2, 3)), np.zeros((3, 3))), (np.zeros((6,)), np.zeros((2, 3)))],
)
def test_values_no_permutation_can_align_are_left_out(reference, candidate):
    assert align(reference, candidate) is None
    assert tensor_errors({"v": reference}, {"v": candidate}, lambda name: TOL) == {}


def test_unit_axes_alone_may_differ():
    aligned, permutation = align(np.array(3, dtype=np.int64), np.array([3], dtype=np.int64))
    assert aligned.shape == () and permutation is None


def test_tensor_errors_apply_the_tolerance_per_value():
    reference = {"ok": np.ones(4, np.float32), "off": np.ones(4, np.float32)}
    candidate = {"ok": np.ones(4, np.float32) + 1e-6, "off": np.ones(4, np.float32) + 1e-2}
    errors = tensor_errors(reference, candidate, lambda name: TOL)
    assert errors["ok"]["passed"] and not errors["off"]["passed"]
    assert errors["off"]["max_abs_diff"] == pytest.approx(1e-2, rel=1e-3)
