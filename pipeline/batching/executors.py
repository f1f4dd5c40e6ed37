"""Where a batch's models run: N local slots (threads), or N Ray actors on a cluster.

A slot converts one model at a time with its own WorkerPool, so its TensorFlow and torch worker
processes stay alive from one model to the next. Both executors run the same `convert_task`; only
the placement differs. `run` yields each model's summary row as it finishes.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

from pipeline.batching.task import Task, convert_task
from pipeline.errors import UsageError
from pipeline.orchestrator.pool import WorkerPool

OnStart = Callable[[str], None]


def make_executor(
    kind: str,
    workers: int,
    max_rss_mb: float | None,
    ray_address: str | None,
    pool: WorkerPool | None = None,
):
    """`pool`: a caller's warm workers, which a single local slot uses as they are (and leaves open)."""
    if kind == "local":
        return LocalExecutor(workers, max_rss_mb, pool)
    if kind == "ray":
        return RayExecutor(workers, max_rss_mb, ray_address)
    raise UsageError(f"unknown executor '{kind}'; use local or ray")


class LocalExecutor:
    def __init__(self, workers: int, max_rss_mb: float | None, pool: WorkerPool | None = None):
        self.workers = workers
        self.max_rss_mb = max_rss_mb
        self._given = pool
        self._stop = threading.Event()
        self._pools: list[WorkerPool] = []

    def run(self, tasks: list[Task], on_start: OnStart) -> Iterator[dict[str, Any]]:
        todo: queue.Queue[Task] = queue.Queue()
        for task in tasks:
            todo.put(task)
        done: queue.Queue[dict[str, Any] | BaseException] = queue.Queue()
        slots = min(self.workers, len(tasks))
        threads = [
            threading.Thread(target=self._slot, args=(todo, done, on_start, slots), daemon=True)
            for _ in range(slots)
        ]
        for thread in threads:
            thread.start()
        for _ in tasks:
            item = _get_interruptibly(done)
            if isinstance(item, BaseException):
                raise item
            yield item

    def _slot(self, todo: queue.Queue, done: queue.Queue, on_start: OnStart, slots: int) -> None:
        # Slots side by side divide the cores; a single slot keeps the frameworks' own defaults, and
        # the caller's warm workers if it has some.
        threads = max(1, (os.cpu_count() or 1) // slots) if slots > 1 else None
        pool = self._given if slots == 1 and self._given is not None else WorkerPool(self.max_rss_mb, threads)
        if pool is not self._given:
            self._pools.append(pool)
        try:
            while not self._stop.is_set():
                try:
                    task = todo.get_nowait()
                except queue.Empty:
                    return
                on_start(task.id)
                try:
                    done.put(convert_task(task, pool))
                except BaseException as exc:  # a bug in this package: surface it in the main thread
                    done.put(exc)
                    return
        finally:
            if pool is not self._given:
                pool.close()

    def close(self) -> None:
        """Stop handing out models and kill the slots' workers (a model in progress is abandoned)."""
        self._stop.set()
        for pool in list(self._pools):
            pool.close()


def _get_interruptibly(done: queue.Queue):
    while True:  # short waits keep Ctrl-C responsive in the main thread
        try:
            return done.get(timeout=0.5)
        except queue.Empty:
            continue


class RaySlot:
    """A Ray actor: one slot with its own worker processes on whichever node Ray placed it."""

    def __init__(self, max_rss_mb: float | None):
        self.pool = WorkerPool(max_rss_mb)

    def convert(self, task: Task) -> dict[str, Any]:
        return convert_task(task, self.pool)

    def close(self) -> None:
        self.pool.close()


class RayExecutor:
    def __init__(self, workers: int, max_rss_mb: float | None, address: str | None):
        try:
            import ray
        except ImportError:
            raise UsageError(
                "--executor ray needs Ray: install it with `pip install '.[ray]'` (make setup does)"
            ) from None
        self.ray = ray
        self._started_here = not ray.is_initialized()
        if self._started_here:
            # A local Ray needs a CPU per slot; a cluster brings its own.
            local = {} if address else {"num_cpus": max(workers, os.cpu_count() or 1)}
            ray.init(
                address=address,
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
                **local,
            )
        actor = ray.remote(num_cpus=1)(RaySlot)
        self.slots = [actor.remote(max_rss_mb) for _ in range(workers)]

    def run(self, tasks: list[Task], on_start: OnStart) -> Iterator[dict[str, Any]]:
        pending = list(reversed(tasks))
        running: dict[Any, Any] = {}  # object ref -> slot
        free = list(self.slots)
        while pending or running:
            while pending and free:
                task, slot = pending.pop(), free.pop()
                on_start(task.id)
                running[slot.convert.remote(task)] = slot
            ready, _ = self.ray.wait(list(running), num_returns=1)
            for ref in ready:
                free.append(running.pop(ref))
                yield self.ray.get(ref)

    def close(self) -> None:
        for slot in self.slots:
            # An actor that died has no workers left to close.
            with contextlib.suppress(Exception):
                self.ray.get(slot.close.remote(), timeout=30)
            self.ray.kill(slot)
        if self._started_here:
            self.ray.shutdown()
