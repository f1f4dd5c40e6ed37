"""Helpers for running the command line as a user would. (Not named `tests.*`: tf2onnx installs a
top-level `tests` package into site-packages, which would shadow ours.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args: str | Path, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `python -m pipeline ...` as a user would, returning its exit code and output."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *map(str, args)],
        cwd=cwd or REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def read_report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())
