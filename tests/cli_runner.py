"""Helpers for running the command line as a user would. (Not named `tests.*`: tf2onnx installs a
top-level `tests` package into site-packages, which would shadow ours.)"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pipeline import cli
from pipeline.orchestrator.pool import WorkerPool

REPO = Path(__file__).resolve().parent.parent


def run_cli(
    *args: str | Path, cwd: Path | None = None, timeout: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run `python -m pipeline ...` as a user would, returning its exit code and output; `env` adds
    variables to the environment."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *map(str, args)],
        cwd=cwd or REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# Worker processes shared by every in-process command of the test session (conftest.py closes them):
# TensorFlow and torch are imported once per worker, not once per command.
_POOL: WorkerPool | None = None


def shared_pool() -> WorkerPool:
    """The session's warm workers (started on first use)."""
    global _POOL
    if _POOL is None:
        _POOL = WorkerPool()
    return _POOL


def run_command(*args: str | Path) -> subprocess.CompletedProcess:
    """`tf2torch ARGS` run inside the test process on the session's warm workers: the same parsing,
    stages, files, output and exit code as `run_cli`, without starting and importing afresh. For tests
    of results; a test of the process itself (signals, environment, working directory, locks held by
    another process) uses `run_cli`. The config's `timeout` bounds every job of the command."""
    pool = shared_pool()
    stdout, stderr = io.StringIO(), io.StringIO()
    sigterm = signal.getsignal(signal.SIGTERM)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                code = cli.main([str(a) for a in args], pool=pool)
            except SystemExit as exc:  # argparse's usage errors
                code = exc.code if isinstance(exc.code, int) else 2
    finally:
        signal.signal(signal.SIGTERM, sigterm)
    return subprocess.CompletedProcess(
        ["tf2torch", *map(str, args)], code, stdout.getvalue(), stderr.getvalue()
    )


def close_shared_workers() -> None:
    global _POOL
    if _POOL is not None:
        _POOL.close()
        _POOL = None


def run_zoo(zoo: Path, out: Path, *extra: str) -> dict[str, dict]:
    """`tf2torch batch ZOO` with two slots; every model's summary row by id. A failing model is a row,
    not an error here: each test reads its own. Two slots of one thread each finish a zoo 1.5-1.9x
    sooner than one slot of two threads on 2 cores (most of a small model's time is single-threaded
    Python); the zoos' `max_rss_mb` keeps the pair within 18 GB (families-training.yaml's peak)."""
    done = run_cli("batch", zoo, "--out", out, "--workers", "2", *extra, timeout=3600)
    assert done.returncode in (0, 1), done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    return {row["id"]: row for row in summary["models"]}


def read_report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


def worker_pids(parent_pid: int, group: str | None = None) -> list[int]:
    """The worker processes (`python -m pipeline.worker GROUP`) a command started, by its PID."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            status = (proc / "status").read_text()
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # the process ended while we looked
        ppid = int(next(line for line in status.splitlines() if line.startswith("PPid:")).split()[1])
        if (
            ppid == parent_pid
            and b"pipeline.worker" in cmdline
            and (group is None or group.encode() in cmdline)
        ):
            found.append(int(proc.name))
    return found


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in state


def default_signals() -> None:
    """preexec_fn for a command a test stops: a background job inherits SIGINT ignored, and a
    terminal's Ctrl-C is what these tests stand for."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def wait_for(condition, timeout: float = 300, every: float = 0.05):
    """Poll `condition` until it returns something true (returned) or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("condition not met in time")
