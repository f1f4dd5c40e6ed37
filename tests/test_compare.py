import numpy as np
import pytest

from pipeline.compare import StructureMismatch, compare_arrays
from pipeline.config import ResolvedTolerance


def tol(atol=1e-5, rtol=1e-4, max_mismatch=0.0, stat="elementwise"):
    return ResolvedTolerance(atol=atol, rtol=rtol, max_mismatch=max_mismatch, stat=stat)


def test_identical_arrays_pass_with_zero_difference():
    a = np.linspace(-1, 1, 50, dtype=np.float32)
    result = compare_arrays(a, a.copy(), tol(atol=0, rtol=0))
    assert (
        result["passed"] and result["max_abs_diff"] == 0 and result["cosine_similarity"] == pytest.approx(1.0)
    )


def test_element_rule_is_atol_plus_rtol_times_reference():
    ref = np.array([0.0, 100.0], dtype=np.float64)
    # bound for element 1 is 1e-3 + 1e-2 * 100 = 1.001
    inside = compare_arrays(ref, ref + np.array([0.0, 1.0]), tol(atol=1e-3, rtol=1e-2))
    outside = compare_arrays(ref, ref + np.array([0.0, 1.01]), tol(atol=1e-3, rtol=1e-2))
    assert inside["passed"] and not outside["passed"]
    assert outside["mismatch_fraction"] == 0.5
    assert outside["max_abs_diff"] == pytest.approx(1.01)
    assert outside["max_rel_diff"] == pytest.approx(0.0101)


def test_rtol_scales_with_the_reference_not_the_candidate():
    ref, cand = np.array([1.0]), np.array([2.0])
    assert not compare_arrays(ref, cand, tol(atol=0, rtol=0.6))["passed"]  # 1 > 0.6 * |1|
    assert compare_arrays(cand, ref, tol(atol=0, rtol=0.6))["passed"]  # 1 <= 0.6 * |2|


def test_max_mismatch_allows_a_fraction_of_failing_elements():
    ref = np.zeros(10)
    cand = ref.copy()
    cand[:2] = 1.0
    assert not compare_arrays(ref, cand, tol(max_mismatch=0.1))["passed"]
    assert compare_arrays(ref, cand, tol(max_mismatch=0.2))["passed"]


def test_nan_and_inf_must_sit_at_the_same_positions():
    ref = np.array([np.nan, np.inf, 1.0])
    assert compare_arrays(ref, ref.copy(), tol())["passed"]
    moved = np.array([1.0, np.inf, np.nan])
    assert not compare_arrays(ref, moved, tol(atol=10))["passed"]
    flipped = np.array([np.nan, -np.inf, 1.0])
    result = compare_arrays(ref, flipped, tol(atol=10))
    assert not result["passed"] and result["mismatched_elements"] == 1


def test_shape_and_dtype_mismatches_are_errors_not_tolerance_passes():
    with pytest.raises(StructureMismatch, match="shape"):
        compare_arrays(np.zeros((2, 3)), np.zeros((3, 2)), tol(atol=1e9))
    with pytest.raises(StructureMismatch, match="shape"):
        compare_arrays(np.zeros((2, 3)), np.zeros((1, 2, 3)), tol(atol=1e9))  # no broadcasting
    with pytest.raises(StructureMismatch, match="dtype"):
        compare_arrays(np.zeros(3, np.float32), np.zeros(3, np.float64), tol(atol=1e9))


def test_empty_tensors_compare_equal():
    result = compare_arrays(np.zeros((0, 4)), np.zeros((0, 4)), tol())
    assert result["passed"] and result["mismatch_fraction"] == 0.0


def test_integer_outputs_are_compared_exactly_with_zero_tolerance():
    ref = np.array([1, 2, 3], dtype=np.int64)
    assert compare_arrays(ref, ref.copy(), tol(atol=0, rtol=0))["passed"]
    assert not compare_arrays(ref, np.array([1, 2, 4]), tol(atol=0, rtol=0))["passed"]


def test_cosine_similarity_of_opposite_vectors():
    a = np.array([1.0, 2.0, 3.0])
    assert compare_arrays(a, -a, tol(atol=100))["cosine_similarity"] == pytest.approx(-1.0)


def test_error_percentiles_are_reported():
    ref = np.zeros(100)
    cand = np.arange(100, dtype=np.float64)  # |diff| = 0..99
    result = compare_arrays(ref, cand, tol(atol=1e9))
    assert result["p50_abs_diff"] == pytest.approx(49.5)
    assert result["p90_abs_diff"] == pytest.approx(89.1)
    assert result["p99_abs_diff"] == pytest.approx(98.01)
    assert result["max_abs_diff"] == 99


@pytest.mark.parametrize(
    ("stat", "atol", "passed"),
    [
        ("max", 0.99, False),  # max |diff| is 1.0
        ("max", 1.0, True),
        ("p99", 0.5, True),  # one element in 200 is off: the 99th percentile does not see it
        ("mean", 0.004, False),  # mean |diff| is 0.005
        ("mean", 0.005, True),
        ("elementwise", 0.5, False),
    ],
)
def test_statistic_rules_judge_one_statistic_of_the_error(stat, atol, passed):
    ref = np.zeros(200)
    cand = ref.copy()
    cand[7] = 1.0
    assert compare_arrays(ref, cand, tol(atol=atol, rtol=0, stat=stat))["passed"] is passed


def test_statistic_rule_scales_rtol_by_the_same_statistic_of_the_reference():
    ref = np.array([100.0, 0.0, 0.0, 0.0])
    cand = np.array([100.0, 0.05, 0.05, 0.05])  # elementwise the zeros fail; against max|ref| it is small
    assert not compare_arrays(ref, cand, tol(atol=0, rtol=1e-3))["passed"]
    assert compare_arrays(ref, cand, tol(atol=0, rtol=1e-3, stat="max"))["passed"]


def test_statistic_rule_still_fails_on_nan_mismatch():
    ref = np.array([1.0, np.nan])
    cand = np.array([1.0, 2.0])
    assert not compare_arrays(ref, cand, tol(atol=1e9, stat="max"))["passed"]


def test_top_k_agreement_for_score_outputs():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((1, 4, 10)).astype(np.float32)  # samples, batch, classes
    cand = ref.copy()
    best = ref[0, 0].argmax()
    second = np.argsort(ref[0, 0])[-2]
    cand[0, 0, second] = ref[0, 0, best] + 1  # row 0: top-1 moves to the runner-up, still in the top 5
    result = compare_arrays(ref, cand, tol(atol=1e9))
    assert result["top1_agreement"] == 0.75
    assert result["top5_agreement"] == 1.0


def test_top_k_is_not_reported_for_non_score_outputs():
    single = compare_arrays(np.zeros((2, 3, 1), np.float32), np.zeros((2, 3, 1), np.float32), tol())
    assert single["top1_agreement"] is None and single["top5_agreement"] is None
    ints = compare_arrays(np.zeros((2, 3), np.int64), np.zeros((2, 3), np.int64), tol())
    assert ints["top1_agreement"] is None
    few = compare_arrays(np.eye(3, dtype=np.float32), np.eye(3, dtype=np.float32), tol())
    assert few["top1_agreement"] == 1.0 and few["top5_agreement"] is None
