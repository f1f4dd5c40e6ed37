"""Shared fixtures. The pytest process never imports TensorFlow (tests import torch, and the two
cannot share a process): models are built and converted in subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> Path:
    """Directory with one tiny real model per format (see tests/build_models.py)."""
    target = tmp_path_factory.mktemp("models")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    subprocess.run(
        [sys.executable, str(REPO / "tests" / "build_models.py"), str(target)],
        check=True,
        env=env,
        capture_output=True,
        timeout=600,
    )
    return target


@pytest.fixture
def write_config(tmp_path):
    def write(text: str, name: str = "config.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write
