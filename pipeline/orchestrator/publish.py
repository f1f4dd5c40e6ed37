"""A run directory appears complete or not at all, and a failed run never replaces a passing one.

A run writes into a hidden staging directory beside its destination (same file system, so the final
rename is atomic) while holding the destination's lock. When the verdict is known:

- it passed, or the destination holds no passing run: the staging directory replaces the destination;
- it failed and the destination holds a passing run: that run stays, the new one goes to `<name>.failed`.

An exception or interrupt deletes the staging directory: no half-written model.onnx or report is left
that could be taken for a result. Staging directories of a run that was killed outright (SIGKILL,
power loss) are deleted by the next run of the same destination.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from pipeline import artifacts
from pipeline.errors import UsageError
from pipeline.orchestrator.lock import run_lock
from pipeline.records import Status

FAILED_SUFFIX = ".failed"
_PARTIAL = ".partial-"


class StagedRun:
    """`with StagedRun(out, "convert") as run:` write into `run.path`, then `run.publish(passed)`."""

    def __init__(self, destination: Path, what: str):
        self.destination = destination
        self.path = destination.parent / f".{destination.name}{_PARTIAL}{os.getpid()}"
        self._lock = run_lock(destination, what)
        self._published = False

    def __enter__(self) -> StagedRun:
        _check_replaceable(self.destination)
        self.destination.parent.mkdir(parents=True, exist_ok=True)
        self._lock.acquire()
        try:
            _remove_stale_staging(self.destination)
            self.path.mkdir()
        except BaseException:
            self._lock.release()
            raise
        return self

    def final_path(self, passed: bool) -> Path:
        """Where this run will be published: the destination, unless that would replace a passing run
        with a failing one."""
        if passed or not holds_passing_run(self.destination):
            return self.destination
        return self.destination.with_name(self.destination.name + FAILED_SUFFIX)

    def publish(self, passed: bool) -> Path:
        final = self.final_path(passed)
        _replace_dir(self.path, final)
        if final == self.destination:
            # A failure kept aside earlier no longer says anything about this model.
            shutil.rmtree(final.with_name(final.name + FAILED_SUFFIX), ignore_errors=True)
        self._published = True
        return final

    def __exit__(self, *exc) -> None:
        try:
            if not self._published:
                shutil.rmtree(self.path, ignore_errors=True)
        finally:
            self._lock.release()


def holds_passing_run(run_dir: Path) -> bool:
    try:
        report = json.loads((run_dir / artifacts.REPORT_JSON).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(report, dict) and report.get("status") == Status.PASS


def _check_replaceable(destination: Path) -> None:
    """Refuse to replace a directory this tool did not write: --out may point anywhere."""
    if not destination.exists():
        return
    if not destination.is_dir():
        raise UsageError(f"--out {destination} is a file; give a directory for the run's artifacts")
    if any(destination.iterdir()) and not (destination / artifacts.REPORT_JSON).is_file():
        raise UsageError(
            f"--out {destination} is not empty and holds no earlier run (no {artifacts.REPORT_JSON}); "
            "its files would be replaced: give a new or empty directory"
        )


def _remove_stale_staging(destination: Path) -> None:
    # Only called while holding the destination's lock: no other process is writing these.
    for stale in destination.parent.glob(f".{destination.name}{_PARTIAL}*"):
        shutil.rmtree(stale, ignore_errors=True)


def _replace_dir(source: Path, target: Path) -> None:
    """Put `source` at `target`; an existing `target` is deleted only after `source` is in place."""
    if not target.exists():
        os.rename(source, target)
        return
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    os.rename(target, old)
    try:
        os.rename(source, target)
    except BaseException:
        os.rename(old, target)  # put the previous run back
        raise
    shutil.rmtree(old, ignore_errors=True)
