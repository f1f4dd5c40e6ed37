"""Output comparison: plain numpy, no framework imports.

An element passes when |candidate - reference| <= atol + rtol * |reference|. A comparison passes when
the fraction of failing elements is at most max_mismatch. NaN and Inf must sit at the same positions
with the same values on both sides. Shapes and dtypes must match exactly: a mismatch is a conversion
error, never something a tolerance can absorb.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.config import ResolvedTolerance


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

    diff = np.abs(cand[finite] - ref[finite])
    abs_ref = np.abs(ref[finite])
    failing[finite] = diff > tol.atol + tol.rtol * abs_ref
    rel = diff[abs_ref > 0] / abs_ref[abs_ref > 0]

    size = ref.size
    mismatch_fraction = float(failing.sum() / size) if size else 0.0
    return {
        "max_abs_diff": float(diff.max()) if diff.size else 0.0,
        "max_rel_diff": float(rel.max()) if rel.size else 0.0,
        "mean_abs_diff": float(diff.mean()) if diff.size else 0.0,
        "mismatch_fraction": mismatch_fraction,
        "mismatched_elements": int(failing.sum()),
        "nonfinite_reference": int((~np.isfinite(ref)).sum()),
        "cosine_similarity": _cosine(ref[finite], cand[finite]),
        "atol": tol.atol,
        "rtol": tol.rtol,
        "max_mismatch": tol.max_mismatch,
        "passed": bool(mismatch_fraction <= tol.max_mismatch),
    }


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    norm_a, norm_b = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if norm_a == 0.0 and norm_b == 0.0:
        return 1.0
    if norm_a == 0.0 or norm_b == 0.0:
        return 0.0
    return float(np.dot(a, b) / (norm_a * norm_b))
