"""Long-lived worker processes, one per framework group, reused across models.

A WorkerPool belongs to one execution slot (one model at a time). It starts a worker on first use
and keeps it for the next model, so a batch imports TensorFlow and torch once per slot instead of once
per model. A worker that crashed, was killed for a timeout, or grew past `max_rss_mb` is replaced
by a fresh one before the next job. Imports neither framework.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pipeline.worker import EVENT_PREFIX


class WorkerProcess:
    """One `python -m pipeline.worker` child; `run` sends it a job and yields its events."""

    def __init__(self, group: str, threads: int | None = None):
        self.group = group
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
        if threads is not None:
            env.update(thread_limits(threads, os.environ))
        # Every torch.load in the worker, libraries' included (torch.export.load of model.pt2), reads
        # tensors only and never unpickles code; the user's own opposite setting would conflict.
        env.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
        env["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline.worker", group],  # the group names it in `ps`
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # each job points the worker's stderr at its own log
            text=True,
            env=env,
            start_new_session=True,  # its own process group, so a kill reaches its children too
        )
        self._events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._log: Path | None = None  # where stray stdout text of the current job goes
        self._log_lock = threading.Lock()
        threading.Thread(
            target=split_events, args=(self.proc.stdout, self._events, self._write_log), daemon=True
        ).start()
        self.returncode: int | None = None
        self.peak_rss_kb = 0

    def run(
        self, job_path: Path, log_path: Path, deadline: float | Callable[[], float]
    ) -> Iterator[dict[str, Any]]:
        """Yield the job's events up to and including `job_end`. Ends early, without `job_end`, if the
        worker dies (the caller reads `returncode`) or the deadline passes (then a `timeout` event).
        A callable deadline is asked again after each event (a stage's own limit moves it)."""
        with self._log_lock:
            self._log = log_path
        try:
            self.proc.stdin.write(f"{job_path}\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self._reap()
            return
        while True:
            try:
                limit = deadline() if callable(deadline) else deadline
                event = self._events.get(timeout=max(0.0, limit - time.monotonic()))
            except queue.Empty:
                self.kill()
                yield {"event": "timeout"}
                return
            if event is None:
                self._reap()
                return
            yield event
            if event["event"] == "job_end":
                return

    @property
    def alive(self) -> bool:
        return self.returncode is None and self.proc.poll() is None

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._reap()

    def close(self, grace: float = 10.0) -> None:
        """Ask the worker to exit (end of its stdin); kill it if it has not within `grace` seconds."""
        self.request_exit()
        deadline = time.monotonic() + grace
        while self.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        self.kill()

    def request_exit(self) -> None:
        if self.returncode is None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()

    def _reap(self) -> None:
        if self.returncode is not None:
            return
        with contextlib.suppress(ChildProcessError):
            _, status, usage = os.wait4(self.proc.pid, 0)
            self.proc.returncode = os.waitstatus_to_exitcode(status)
            self.peak_rss_kb = usage.ru_maxrss
        self.returncode = self.proc.returncode if self.proc.returncode is not None else -1

    def _write_log(self, text: str) -> None:
        with self._log_lock, contextlib.suppress(OSError):
            if self._log is not None:
                with self._log.open("a") as log:
                    log.write(text)


def split_events(stream, events: queue.Queue, write_text: Callable[[str], None]) -> None:
    """Forward a worker's event lines (parsed) to `events`; anything else a library printed goes to
    `write_text`. An event may follow text printed without a newline, so it is looked for anywhere in
    the line. Puts None at the end of the stream."""
    for raw in stream:
        before, marker, event = raw.partition(EVENT_PREFIX)
        if before.strip():
            write_text(before if before.endswith("\n") else before + "\n")
        if marker:
            events.put(json.loads(event))
    events.put(None)


def thread_limits(threads: int, environ) -> dict[str, str]:
    """The environment that keeps a worker's TensorFlow, torch (OpenMP) and MKL to `threads` threads,
    where the user has not chosen. Slots running side by side must share the cores: two torch workers
    of 2 threads each on 2 cores spin in each other's OpenMP barriers (a 2 s training step took 100 s)."""
    names = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")
    return {name: str(threads) for name in names if name not in environ}


class WorkerPool:
    """The worker processes of one execution slot, by group. `threads`: each worker's thread budget
    (a batch's slots divide the cores between them); None leaves the frameworks' defaults."""

    def __init__(self, max_rss_mb: float | None = None, threads: int | None = None):
        self.max_rss_mb = max_rss_mb
        self.threads = threads
        self._workers: dict[str, WorkerProcess] = {}
        self._lock = threading.Lock()  # close() may come from another thread (an interrupted batch)
        self._closed = False

    def get(self, group: str) -> WorkerProcess:
        with self._lock:
            if self._closed:
                raise RuntimeError("the worker pool was closed (the batch is stopping)")
            worker = self._workers.get(group)
            if worker is None or not worker.alive:
                worker = self._workers[group] = WorkerProcess(group, self.threads)
            return worker

    def prestart(self, groups) -> None:
        """Start the workers of `groups` now, so that each imports its framework while the others work."""
        for group in groups:
            self.get(group)

    def after_job(self, group: str, rss_mb: float | None) -> None:
        """Retire a worker that died or grew past the memory ceiling; the next job gets a fresh one."""
        with self._lock:
            worker = self._workers.get(group)
            too_big = self.max_rss_mb is not None and rss_mb is not None and rss_mb > self.max_rss_mb
            if worker is None or (worker.alive and not too_big):
                return
            del self._workers[group]
        worker.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            workers = list(self._workers.values())
            self._workers.clear()
        # Every job has ended: the workers only have their interpreters to tear down (TensorFlow's
        # takes seconds). Ask all at once, wait briefly, then kill.
        for worker in workers:
            worker.request_exit()
        for worker in workers:
            worker.close(grace=0.3)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
