"""How much memory a batch's model needs, and how much a machine offers.

A model's need is what its worker processes (TensorFlow's and torch's, alive side by side) held at
their peak the last time it was converted: every run records that in its report.json (`workers`), and
a batch keeps it even when the model's fingerprint changed. A model converted for the first time gets
an estimate from its file's size, with the factors docs/performance.md measures. Plain Python.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from pipeline import artifacts
from pipeline.errors import UsageError
from pipeline.orchestrator.publish import FAILED_SUFFIX

# Measured (docs/performance.md, "Memory need"): each worker's peak against the .keras file's size,
# MLPs of 10, 88 and 180 MB, rounded up so that an estimate errs on the safe side. The bases also
# cover a small model built in the worker (a zoo id, no file): 1.47-1.52 GB for both workers.
TF_WORKER_BASE_MB = 700.0
TORCH_WORKER_BASE_MB = 1000.0
# Per MB of model file: the TF worker holds the loaded model and its export's copies (7.9x fitted);
# the torch worker the ONNX model, the torch modules of both import routes and their saved forms (13.6x).
TF_WORKER_PER_MODEL_MB = 8.0
TORCH_WORKER_PER_MODEL_MB = 14.0


def need_mb(model: str, run_dir: Path, given_mb: float | None = None) -> tuple[float, str]:
    """The memory (MB) converting `model` into `run_dir` needs, and where the figure comes from:
    `given_mb` (the zoo entry's `memory`), else the last run's peak, else an estimate."""
    if given_mb is not None:
        return given_mb, "given"
    measured = measured_mb(run_dir)
    if measured is not None:
        return measured, "measured"
    return estimated_mb(model), "estimated"


def measured_mb(run_dir: Path) -> float | None:
    """The sum of the workers' peaks in the last run's report (a failed run kept aside counts too)."""
    peaks = []
    for directory in (run_dir, run_dir.with_name(run_dir.name + FAILED_SUFFIX)):
        try:
            workers = json.loads((directory / artifacts.REPORT_JSON).read_text()).get("workers") or {}
        except (OSError, ValueError, AttributeError):
            continue
        total = sum(float(w.get("peak_rss_mb") or 0) for w in workers.values() if isinstance(w, dict))
        if total > 0:
            peaks.append(total)
    return round(max(peaks), 1) if peaks else None


def estimated_mb(model: str) -> float:
    """Both workers' base plus the factors times the model's size on disk (0 for a zoo id, built in
    the worker)."""
    size = _size_mb(Path(model))
    per_mb = TF_WORKER_PER_MODEL_MB + TORCH_WORKER_PER_MODEL_MB
    return round(TF_WORKER_BASE_MB + TORCH_WORKER_BASE_MB + per_mb * size, 1)


def _size_mb(path: Path) -> float:
    try:
        if path.is_file():
            return path.stat().st_size / 2**20
        if path.is_dir():
            return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20
    except OSError:
        pass
    return 0.0


def available_mb() -> float | None:
    """The memory this machine can give without swapping (MemAvailable), or None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (ValueError, OSError, AttributeError):
        return None


_UNITS = {"": 1.0, "m": 1.0, "mb": 1.0, "g": 1024.0, "gb": 1024.0, "t": 1024.0**2, "tb": 1024.0**2}


def parse_mb(text: str | float, what: str = "--max-memory") -> float:
    """'16G', '800M', '2.5GB' or a plain number of MB, as MB; a UsageError naming `what` otherwise."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS or float(match.group(1)) <= 0:
        raise UsageError(f"{what} {text!r}: give a size such as 16G, 800M or a number of MB")
    return float(match.group(1)) * _UNITS[unit]


def describe(mb: float) -> str:
    return f"{mb / 1024:.1f} GB" if mb >= 1024 else f"{mb:.0f} MB"
