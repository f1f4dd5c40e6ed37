"""Where a batch's models run: N local slots (threads), or N Ray actors on a cluster (ray_executor.py).

A slot converts one model at a time with its own WorkerPool, so its TensorFlow and torch worker
processes stay alive from one model to the next. Both executors run the same `convert_task` and share
the rules: a model whose worker (or whose slot's node) was lost runs again, up to `retries` more
times, and is then recorded as failed with the reason; a model runs only where its memory need fits
(the local budget, a Ray node's `memory` resource), and one that fits nowhere is refused before it
starts. `run` yields each model's summary row as it finishes, and a row for every task it was given.
"""

from __future__ import annotations

import os
import queue
import threading
from collections import deque
from collections.abc import Iterator
from typing import Any

from pipeline.batching import memory
from pipeline.batching.rules import (
    DEFAULT_RETRIES,
    Attempts,
    OnRetry,
    OnStart,
    finish,
    internal_error,
    refusal,
)
from pipeline.batching.task import Task, convert_task
from pipeline.errors import UsageError
from pipeline.orchestrator.pool import WorkerPool


def make_executor(
    kind: str,
    workers: int,
    max_rss_mb: float | None,
    ray_address: str | None,
    pool: WorkerPool | None = None,
    retries: int = DEFAULT_RETRIES,
    max_memory_mb: float | None = None,
):
    """`pool`: a caller's warm workers, which a single local slot uses as they are (and leaves open)."""
    if kind == "local":
        return LocalExecutor(workers, max_rss_mb, pool, retries, max_memory_mb)
    if kind == "ray":
        from pipeline.batching.ray_executor import RayExecutor

        return RayExecutor(workers, max_rss_mb, ray_address, retries)
    raise UsageError(f"unknown executor '{kind}'; use local or ray")


class LocalExecutor:
    def __init__(
        self,
        workers: int,
        max_rss_mb: float | None,
        pool: WorkerPool | None = None,
        retries: int = DEFAULT_RETRIES,
        max_memory_mb: float | None = None,
    ):
        self.workers = workers
        self.max_rss_mb = max_rss_mb
        self.attempts = Attempts(retries)
        self.budget_mb = max_memory_mb if max_memory_mb is not None else memory.available_mb()
        self.budget_name = "--max-memory" if max_memory_mb is not None else "this machine's available memory"
        self._given = pool
        self._on_retry: OnRetry = lambda entry_id, reason: None
        self._stop = threading.Event()
        self._pools: list[WorkerPool] = []

    def run(
        self, tasks: list[Task], on_start: OnStart, on_retry: OnRetry | None = None
    ) -> Iterator[dict[str, Any]]:
        self._on_retry = on_retry or (lambda entry_id, reason: None)
        fitting = []
        for task in tasks:
            refused = refusal(task, self.budget_mb, self.budget_name)
            if refused is not None:
                yield refused
            else:
                fitting.append(task)
        if not fitting:
            return
        board = _Board(fitting, self.budget_mb)
        done: queue.Queue[dict[str, Any]] = queue.Queue()
        slots = min(self.workers, len(fitting))
        for _ in range(slots):
            threading.Thread(target=self._slot, args=(board, done, on_start, slots), daemon=True).start()
        for _ in fitting:
            yield _get_interruptibly(done)

    def _slot(self, board: _Board, done: queue.Queue, on_start: OnStart, slots: int) -> None:
        # Slots side by side divide the cores; a single slot keeps the frameworks' own defaults, and
        # the caller's warm workers if it has some.
        threads = max(1, (os.cpu_count() or 1) // slots) if slots > 1 else None
        pool = self._given if slots == 1 and self._given is not None else WorkerPool(self.max_rss_mb, threads)
        if pool is not self._given:
            self._pools.append(pool)
        try:
            while (task := board.take(self._stop)) is not None:
                on_start(task.id)
                try:
                    row = convert_task(task, pool)
                except Exception as exc:  # a bug in this package: that model fails, the others go on
                    row = internal_error(task, exc)
                finally:
                    board.release(task)
                lost = row.get("worker_lost")
                if lost and not self._stop.is_set() and self.attempts.retry(task.id, lost):
                    self._on_retry(task.id, lost)
                    board.put_back(task)  # a fresh worker (this slot's or another's) runs it again
                    continue
                done.put(finish(task, row, self.attempts))
        finally:
            if pool is not self._given:
                pool.close()

    def close(self) -> None:
        """Stop handing out models and kill the slots' workers (a model in progress is abandoned)."""
        self._stop.set()
        for pool in list(self._pools):
            pool.close()


class _Board:
    """The local slots' shared queue: a slot takes the first waiting model whose memory need fits in
    what the running ones leave of the budget (or any model, when nothing runs)."""

    def __init__(self, tasks: list[Task], budget_mb: float | None):
        self._waiting = deque(tasks)
        self._budget = budget_mb
        self._in_use = 0.0
        self._running = 0
        self._changed = threading.Condition()

    def take(self, stop: threading.Event) -> Task | None:
        with self._changed:
            while not stop.is_set():
                if not self._waiting:
                    if not self._running:
                        return None
                    # A running model may yet come back for a retry.
                    self._changed.wait(0.5)
                    continue
                task = next((t for t in self._waiting if self._fits(t)), None)
                if task is not None:
                    self._waiting.remove(task)
                    self._in_use += task.memory_mb
                    self._running += 1
                    return task
                self._changed.wait(0.5)
            return None

    def _fits(self, task: Task) -> bool:
        return self._running == 0 or self._budget is None or self._in_use + task.memory_mb <= self._budget

    def release(self, task: Task) -> None:
        with self._changed:
            self._in_use -= task.memory_mb
            self._running -= 1
            self._changed.notify_all()

    def put_back(self, task: Task) -> None:
        with self._changed:
            self._waiting.appendleft(task)
            self._changed.notify_all()


def _get_interruptibly(done: queue.Queue):
    while True:  # short waits keep Ctrl-C responsive in the main thread
        try:
            return done.get(timeout=0.5)
        except queue.Empty:
            continue
