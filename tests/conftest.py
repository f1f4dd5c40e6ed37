"""Shared fixtures. The pytest process never imports TensorFlow (tests import torch, and the two
cannot share a process): models are built and converted in subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_runner import REPO, close_shared_workers


@pytest.fixture(scope="session", autouse=True)
def _shared_workers():
    """The warm worker processes of `run_command`, ended with the session."""
    yield
    close_shared_workers()


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
