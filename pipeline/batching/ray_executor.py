"""The Ray executor: a batch's slots as Ray actors on a cluster's nodes, placed by memory.

Each actor reserves one CPU and its model's memory need (Ray's `memory` resource), converts in a
scratch directory of its node and sends the run directory back (shipping.py), so no file system need
be shared. An actor or node lost mid-model puts the model back for another slot (executors.Attempts).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.batching import memory, summary
from pipeline.batching.rules import Attempts, OnRetry, OnStart, finish, internal_error, refusal
from pipeline.batching.task import Task, convert_task
from pipeline.errors import EXIT_CONVERSION, UsageError, first_line
from pipeline.orchestrator.pool import WorkerPool

# A Ray task gets its model's two worker timeouts plus this long before it is given up as hung.
RAY_TASK_GRACE_S = 300.0
RAY_POLL_S = 1.0
# With no model running, a slot that no node has placed for this long fails the models still waiting.
RAY_PLACEMENT_TIMEOUT_S = 600.0


def _check_reachable(address: str | None, seconds: float = 10.0) -> None:
    """Refuse a HOST:PORT (or ray://HOST:PORT) nothing answers at: Ray itself retries for minutes."""
    match = re.fullmatch(r"(?:ray://)?\[?([^\]/]+?)\]?:(\d+)/?", address or "")
    if match is None:
        return  # `auto`, or none: Ray finds the cluster itself (and fails fast if there is none)
    try:
        socket.create_connection((match.group(1), int(match.group(2))), timeout=seconds).close()
    except OSError as exc:
        raise UsageError(
            f"no Ray cluster answers at {address} ({exc.strerror or exc}); start one with `ray start --head` "
            "or give its address (HEAD:6379, or ray://HEAD:10001 for Ray Client)"
        ) from None


class RaySlot:
    """A Ray actor: one slot with its own worker processes on whichever node Ray placed it. It
    converts in a scratch directory of its node and sends the run directory back (shipping.py)."""

    def __init__(self, max_rss_mb: float | None):
        import ray

        self.pool = WorkerPool(max_rss_mb)
        self.node_id = ray.get_runtime_context().get_node_id()
        self.stages: list[str] = []
        self.finished: set[str] = set()

    def status(self) -> tuple[str, str | None]:
        """This slot's node, and the stage its model is in (asked while `convert` runs)."""
        current = next((s for s in self.stages if s not in self.finished), None)
        return self.node_id, current

    def convert(self, task: Task, inputs: bytes | None) -> tuple[dict[str, Any], bytes | None]:
        from pipeline import plan
        from pipeline.batching import shipping
        from pipeline.config import ModelConfig

        scratch = Path(tempfile.mkdtemp(prefix=f"tf2torch-{task.id}-"))
        try:
            if inputs is not None:
                task = shipping.unpack_inputs(task, inputs, scratch / "inputs")
            cfg = ModelConfig.model_validate(task.config)
            self.stages = [name for _, names in plan.CONVERT.groups(cfg) for name in names]
            self.finished = set()
            done = self.finished
            row = convert_task(task, self.pool, scratch / "runs" / task.id, lambda r: done.add(r["name"]))
            row["ray_node"] = self.node_id  # where it ran: the summary names it
            run_dir = row.get("out_dir")
            return row, shipping.pack_dir(Path(run_dir)) if run_dir else None
        finally:
            self.stages = []
            shutil.rmtree(scratch, ignore_errors=True)

    def close(self) -> None:
        self.pool.close()


@dataclass
class _Actor:
    handle: Any
    memory_mb: float
    created: float
    node_id: str | None = None


@dataclass
class _Running:
    actor: _Actor
    task: Task
    deadline: float
    inputs: Any = None
    stage: str | None = None
    status: Any = None  # an in-flight `status` call


class RayExecutor:
    def __init__(self, workers: int, max_rss_mb: float | None, address: str | None, retries: int = 2):
        try:
            import ray
        except ImportError:
            raise UsageError(
                "--executor ray needs Ray: install it with `pip install '.[ray]'` (make setup does)"
            ) from None
        self.ray = ray
        self.workers = workers
        self.max_rss_mb = max_rss_mb
        self.attempts = Attempts(retries)
        self._started_here = not ray.is_initialized()
        if self._started_here:
            # A local Ray needs a CPU per slot; a cluster brings its own.
            local = {} if address else {"num_cpus": max(workers, os.cpu_count() or 1)}
            _check_reachable(address)
            try:
                ray.init(
                    address=address,
                    include_dashboard=False,
                    log_to_driver=False,
                    configure_logging=False,
                    **local,
                )
            except Exception as exc:  # e.g. `auto` with no cluster on this machine
                raise UsageError(f"cannot join the Ray cluster at {address}: {first_line(exc)}") from None
        # Two threads: `status` answers while `convert` runs.
        self._actor_class = ray.remote(max_concurrency=2)(RaySlot)
        self._actors: list[_Actor] = []

    def run(
        self, tasks: list[Task], on_start: OnStart, on_retry: OnRetry | None = None
    ) -> Iterator[dict[str, Any]]:
        on_retry = on_retry or (lambda entry_id, reason: None)
        waiting = deque(tasks)
        running: dict[Any, _Running] = {}
        starting: dict[Any, _Actor] = {}  # an actor's first `status` call -> the actor, until placed
        idle: list[_Actor] = []
        while waiting or running:
            largest = self._largest_node_mb()
            for task in list(waiting):
                refused = refusal(task, largest, "any live node of the cluster")
                if refused is not None:
                    waiting.remove(task)
                    yield refused
            self._settle(starting, idle)
            for actor in list(idle):  # a placed, free slot takes the first model that fits it
                task = next((t for t in waiting if t.memory_mb <= actor.memory_mb), None)
                if task is not None:
                    idle.remove(actor)
                    waiting.remove(task)
                    on_start(task.id)
                    self._start(task, actor, running)
            # A free slot no waiting model fits holds a CPU and memory a new slot may need: release it.
            for actor in idle:
                self._drop(actor)
            idle.clear()
            for task in list(waiting)[len(starting) :]:
                if len(running) + len(starting) >= self.workers:
                    break
                actor = self._new_actor(task.memory_mb)
                starting[actor.handle.status.remote()] = actor
            if (
                not running
                and starting
                and time.monotonic() - min(a.created for a in starting.values()) > (RAY_PLACEMENT_TIMEOUT_S)
            ):
                for task in waiting:
                    why = (
                        f"no node of the cluster took a slot of {memory.describe(task.memory_mb)} within "
                        f"{RAY_PLACEMENT_TIMEOUT_S:g} s (other work holds its CPUs or memory)"
                    )
                    yield summary.error_row(task.id, task.model, "placement", why, EXIT_CONVERSION)
                waiting.clear()
                break
            if not running and not starting:
                continue
            ready, _ = self.ray.wait([*running, *starting], num_returns=1, timeout=RAY_POLL_S)
            for ref in ready:
                if ref not in running:
                    continue  # a slot came up: placed on the next round
                job = running.pop(ref)
                row = self._collect(ref, job, idle)
                if row is None:  # lost: run it again on another slot
                    on_retry(job.task.id, self.attempts.last_loss(job.task.id))
                    waiting.appendleft(job.task)
                else:
                    yield row
            self._poll(running)
            for ref, job in list(running.items()):
                if time.monotonic() > job.deadline:
                    del running[ref]
                    self._drop(job.actor)
                    why = f"no result within {2 * job.task.timeout + RAY_TASK_GRACE_S:g} s (the slot hung)"
                    yield summary.error_row(
                        job.task.id, job.task.model, job.stage or "load", why, EXIT_CONVERSION
                    )
        for actor in [*idle, *starting.values()]:
            self._drop(actor)

    def _start(self, task: Task, actor: _Actor, running: dict[Any, _Running]) -> None:
        from pipeline.batching import shipping

        inputs = shipping.pack_inputs(task)
        inputs_ref = self.ray.put(inputs) if inputs is not None else None
        ref = actor.handle.convert.remote(task, inputs_ref)
        deadline = time.monotonic() + 2 * task.timeout + RAY_TASK_GRACE_S
        running[ref] = _Running(actor, task, deadline, inputs_ref)

    def _settle(self, starting: dict[Any, _Actor], idle: list[_Actor]) -> None:
        """Slots that came up join `idle`; one whose node went before it came up is dropped."""
        if not starting:
            return
        ready, _ = self.ray.wait(list(starting), num_returns=len(starting), timeout=0)
        for ref in ready:
            actor = starting.pop(ref)
            try:
                actor.node_id, _ = self.ray.get(ref)
            except self.ray.exceptions.RayError:
                self._drop(actor)
                continue
            idle.append(actor)

    def _collect(self, ref, job: _Running, idle: list[_Actor]) -> dict[str, Any] | None:
        """The finished model's row (its run directory published here), or None to run it again."""
        from pipeline.batching import shipping

        ray = self.ray
        try:
            row, archive = ray.get(ref)
        except ray.exceptions.RayTaskError as exc:  # convert itself raised: a bug, not a lost node
            idle.append(job.actor)
            return internal_error(job.task, exc.cause if exc.cause is not None else exc)
        except ray.exceptions.RayError as exc:  # the actor, its node or the result was lost
            self._drop(job.actor)
            reason = f"{self._loss(job.actor, exc)} during {job.stage or 'start-up'}"
            if self.attempts.retry(job.task.id, reason):
                return None
            return self.attempts.final(
                summary.error_row(job.task.id, job.task.model, job.stage or "load", reason, EXIT_CONVERSION)
            )
        idle.append(job.actor)
        lost = row.get("worker_lost")
        if lost and self.attempts.retry(job.task.id, lost):
            return None
        if archive is None:
            return finish(job.task, {**row, "out_dir": None}, self.attempts)  # nothing came back
        return finish(job.task, row, self.attempts, lambda r: shipping.publish_shipped(job.task, r, archive))

    def _loss(self, actor: _Actor, exc: Exception) -> str:
        """Which was lost: the node (the slot's node is no longer alive) or only the slot's process."""
        alive = {n["NodeID"] for n in self._nodes()}
        if actor.node_id is not None:
            return "node lost" if actor.node_id not in alive else "slot process died"
        # The slot died before it said where it ran: Ray's own cause.
        return (
            "node lost"
            if isinstance(exc, self.ray.exceptions.NodeDiedError) or "node has died" in str(exc)
            else "slot lost"
        )

    def _new_actor(self, memory_mb: float) -> _Actor:
        """A slot that reserves one CPU and `memory_mb` of a node: Ray places it where both fit."""
        options = {"num_cpus": 1, "memory": int(memory_mb * 2**20)}
        actor = _Actor(
            self._actor_class.options(**options).remote(self.max_rss_mb), memory_mb, time.monotonic()
        )
        self._actors.append(actor)
        return actor

    def _poll(self, running: dict[Any, _Running]) -> None:
        """Learn each running model's slot node and stage (for the reason, should its node go)."""
        for job in running.values():
            if job.status is not None:
                done, _ = self.ray.wait([job.status], timeout=0)
                if not done:
                    continue
                with contextlib.suppress(Exception):
                    job.actor.node_id, job.stage = self.ray.get(job.status)
            job.status = job.actor.handle.status.remote()

    def _nodes(self) -> list[dict[str, Any]]:
        return [n for n in self.ray.nodes() if n.get("Alive")]

    def _largest_node_mb(self) -> float | None:
        """The most memory one live node with a free CPU slot can give, in MB."""
        sizes = [
            n["Resources"].get("memory", 0) / 2**20
            for n in self._nodes()
            if n.get("Resources", {}).get("CPU", 0) >= 1
        ]
        return max(sizes) if sizes else 0.0

    def _drop(self, actor: _Actor) -> None:
        with contextlib.suppress(Exception):
            self.ray.kill(actor.handle)
        with contextlib.suppress(ValueError):
            self._actors.remove(actor)

    def close(self) -> None:
        for actor in list(self._actors):
            # An actor that died has no workers left to close.
            with contextlib.suppress(Exception):
                self.ray.get(actor.handle.close.remote(), timeout=30)
            self._drop(actor)
        if self._started_here:
            self.ray.shutdown()
