"""Output comparison: plain numpy, no framework imports.

With `stat: elementwise` (the default) an element passes when |candidate - reference| <= atol +
rtol * |reference|, and a comparison passes when the fraction of failing elements is at most
max_mismatch. With `stat: max`, `p99` or `mean`, that statistic of |candidate - reference| must be
at most atol + rtol * the same statistic of |reference|: a rule on the error's scale rather than on
every element. Either way NaN and Inf must sit at the same positions with the same values on both
sides. Shapes and dtypes must match exactly: a mismatch is a conversion
error, never something a tolerance can absorb.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.config import ResolvedTolerance

_LARGEST = np.finfo(np.float64).max


class StructureMismatch(Exception):
    """Shapes or dtypes differ: the outputs are not comparable at all."""


def compare_arrays(reference: np.ndarray, candidate: np.ndarray, tol: ResolvedTolerance) -> dict[str, Any]:
    if reference.shape != candidate.shape:
        raise StructureMismatch(f"shape {candidate.shape} differs from the reference shape {reference.shape}")
    if reference.dtype != candidate.dtype:
        raise StructureMismatch(f"dtype {candidate.dtype} differs from the reference dtype {reference.dtype}")

    ref = reference.astype(np.float64).ravel()
    cand = candidate.astype(np.float64).ravel()
    finite = np.isfinite(ref) & np.isfinite(cand)
    # Non-finite values must agree exactly: NaN with NaN, +Inf with +Inf.
    nonfinite_ok = (np.isnan(ref) & np.isnan(cand)) | (ref == cand)
    failing = ~finite & ~nonfinite_ok

    with np.errstate(over="ignore"):
        # Two finite float64 values near the type's limits can differ by more than it holds: such a
        # difference counts as the largest float64, so every figure stays a number (reports are JSON).
        diff = np.minimum(np.abs(cand[finite] - ref[finite]), _LARGEST)
        abs_ref = np.abs(ref[finite])
        failing[finite] = diff > tol.atol + np.minimum(tol.rtol * abs_ref, _LARGEST)
        rel = np.minimum(diff[abs_ref > 0] / abs_ref[abs_ref > 0], _LARGEST)

    size = ref.size
    mismatch_fraction = float(failing.sum() / size) if size else 0.0
    if tol.stat == "elementwise":
        passed = mismatch_fraction <= tol.max_mismatch
    else:
        nonfinite_failing = bool(failing[~finite].any())  # NaN/Inf disagreements
        passed = not nonfinite_failing and _stat(diff, tol.stat) <= tol.atol + tol.rtol * _stat(
            abs_ref, tol.stat
        )
    return {
        "max_abs_diff": float(diff.max()) if diff.size else 0.0,
        "max_rel_diff": float(rel.max()) if rel.size else 0.0,
        "mean_abs_diff": _stat(diff, "mean"),
        **{f"p{q}_abs_diff": _stat(diff, f"p{q}") for q in (50, 90, 99)},
        "p99_rel_diff": _stat(rel, "p99"),
        "mismatch_fraction": mismatch_fraction,
        "mismatched_elements": int(failing.sum()),
        "nonfinite_reference": int((~np.isfinite(ref)).sum()),
        "cosine_similarity": _cosine(ref[finite], cand[finite]),
        **top_k_agreement(reference, candidate),
        "atol": tol.atol,
        "rtol": tol.rtol,
        "max_mismatch": tol.max_mismatch,
        "stat": tol.stat,
        "passed": bool(passed),
    }


def top_k_agreement(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float | None]:
    """For classifier-like outputs (float, last axis of 2+ scores: logits or probabilities), the share of
    rows where both sides pick the same class (top-1), and where the reference's class is among the
    candidate's five best (top-5; only with more than five classes). None for other outputs."""
    none = {"top1_agreement": None, "top5_agreement": None}
    if not np.issubdtype(reference.dtype, np.floating) or reference.ndim < 2 or reference.shape[-1] < 2:
        return none
    ref = reference.reshape(-1, reference.shape[-1])
    cand = candidate.reshape(-1, candidate.shape[-1])
    if not ref.size or not (np.isfinite(ref).all() and np.isfinite(cand).all()):
        return none
    best = ref.argmax(axis=1)
    top1 = float(np.mean(best == cand.argmax(axis=1)))
    if ref.shape[1] <= 5:
        return {"top1_agreement": top1, "top5_agreement": None}
    top5 = np.argpartition(-cand, 5, axis=1)[:, :5]
    return {"top1_agreement": top1, "top5_agreement": float(np.mean((top5 == best[:, None]).any(axis=1)))}


def _stat(values: np.ndarray, stat: str) -> float:
    if not values.size:
        return 0.0
    if stat == "max":
        return float(values.max())
    if stat == "mean":
        with np.errstate(over="ignore"):
            mean = values.mean()
        # The sum of values near float64's limit overflows; the sum of their shares does not.
        return float(mean if np.isfinite(mean) else np.sum(values / values.size))
    return float(np.percentile(values, float(stat[1:])))


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    # Scaled to at most 1 first: the squares of values near float64's limit overflow.
    scale = max(float(np.abs(a).max(initial=0.0)), float(np.abs(b).max(initial=0.0)))
    if scale == 0.0:
        return 1.0
    a, b = a / scale, b / scale
    norm_a, norm_b = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if norm_a == 0.0 or norm_b == 0.0:
        return 0.0
    return float(np.clip(np.dot(a, b) / (norm_a * norm_b), -1.0, 1.0))
