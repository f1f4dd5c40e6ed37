"""One writer at a time per output directory: a lock file holding the owner's PID.

`batch` locks its output directory; `convert` and `verify` lock each model's run directory (the lock
sits beside it, since the directory itself is replaced when the run is published). A lock whose process
no longer exists (killed, machine rebooted) is stale and taken over.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
import time
from pathlib import Path

from pipeline.errors import UsageError

LOCK_NAME = ".tf2torch-batch.lock"


class OutputLock:
    """`path` is the lock file; `guarded` the directory named in the message, `what` the command."""

    def __init__(self, path: Path, guarded: Path, what: str):
        self.path = path
        self.guarded = guarded
        self.what = what
        self._held = False

    def acquire(self) -> None:
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        # Unique per call: a batch's threads take the locks of several models at once, in one process.
        fd, name = tempfile.mkstemp(prefix=f"{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(record))
        tmp = Path(name)
        try:
            for _ in range(2):
                try:
                    os.link(tmp, self.path)  # atomic: the lock appears with its content, or not at all
                except FileExistsError:
                    holder = self._read()
                    if holder is not None and _alive(holder):
                        raise UsageError(
                            f"another {self.what} (PID {holder.get('pid')} on {holder.get('host')}, "
                            f"since {holder.get('since')}) is writing to {self.guarded}; wait for it or "
                            "use another --out"
                        ) from None
                    self.path.unlink(missing_ok=True)  # stale: its process is gone
                    continue
                self._held = True
                return
        finally:
            tmp.unlink(missing_ok=True)
        raise UsageError(f"could not take the lock {self.path}; remove it if no {self.what} is running")

    def release(self) -> None:
        if self._held:
            self.path.unlink(missing_ok=True)
            self._held = False

    def _read(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None  # unreadable or half-written by a process that died: treat as stale

    def __enter__(self) -> OutputLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def batch_lock(out: Path) -> OutputLock:
    return OutputLock(out / LOCK_NAME, out, "batch")


def run_lock(run_dir: Path, what: str) -> OutputLock:
    return OutputLock(run_dir.parent / f".{run_dir.name}.lock", run_dir, what)


def _alive(holder: dict) -> bool:
    if holder.get("host") != socket.gethostname():
        return True  # cannot check another machine's processes; assume it is running
    pid = holder.get("pid")
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        # A PID reused by an unrelated process after a reboot is not our batch.
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        return b"pipeline" in cmdline or b"tf2torch" in cmdline
    return True
