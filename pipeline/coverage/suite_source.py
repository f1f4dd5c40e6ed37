"""The test suite of the installed tf2onnx, taken from its sdist on PyPI (its wheel has no tests).

pip downloads the sdist of exactly the installed version into a cache folder on first use; nothing of
tf2onnx's is copied into this repository. The folder is TF2TORCH_CACHE (default ~/.cache/tf2torch).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from importlib import metadata
from pathlib import Path

# What the backend tests import from their own folder; the rest of tests/ is not needed.
SUITE_FILES = ("backend_test_base.py", "common.py", "test_backend.py", "tfjs_runner.py")


class SuiteUnavailable(RuntimeError):
    """The sdist could not be downloaded or lacks the tests (no registry, or a changed layout)."""


def cache_root() -> Path:
    return Path(os.environ.get("TF2TORCH_CACHE") or Path.home() / ".cache" / "tf2torch")


def suite_dir(version: str | None = None) -> Path:
    """The folder holding tf2onnx's backend tests for `version` (the installed one by default),
    downloading the sdist when the cache lacks it."""
    version = version or metadata.version("tf2onnx")
    target = cache_root() / f"tf2onnx-{version}-tests"
    if all((target / name).is_file() for name in SUITE_FILES):
        return target
    download = cache_root() / "sdists"
    download.mkdir(parents=True, exist_ok=True)
    archive = download / f"tf2onnx-{version}.tar.gz"
    if not archive.is_file():
        command = [
            sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
            f"tf2onnx=={version}", "--dest", str(download),
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0 or not archive.is_file():
            raise SuiteUnavailable(
                f"could not download the tf2onnx {version} sdist with pip: {done.stderr.strip()[-500:]}"
            )
    _extract_tests(archive, target)
    return target


def _extract_tests(archive: Path, target: Path) -> None:
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        members = {Path(m.name).name: m for m in tar.getmembers() if Path(m.name).parent.name == "tests"}
        missing = [name for name in SUITE_FILES if name not in members]
        if missing:
            raise SuiteUnavailable(f"{archive.name} has no tests/{', tests/'.join(missing)}")
        for name in SUITE_FILES:
            (partial / name).write_bytes(tar.extractfile(members[name]).read())
    shutil.rmtree(target, ignore_errors=True)
    partial.replace(target)  # whole or not at all: a half-extracted cache is never used
