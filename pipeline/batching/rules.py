"""What both executors (local slots, Ray actors) share: bounded reruns of a model whose run was lost,
the refusal of a model no slot can hold, and a model's final row."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

from pipeline.batching import memory, summary
from pipeline.batching.task import Task, record_result
from pipeline.errors import EXIT_CONVERSION, EXIT_USAGE, PipelineError

DEFAULT_RETRIES = 2
OnStart = Callable[[str], None]
OnRetry = Callable[[str, str], None]  # a model's id and why its run was lost


class Attempts:
    """How often each model ran and why its earlier runs were lost; at most `retries` reruns."""

    def __init__(self, retries: int):
        self.retries = retries
        self._lost: dict[str, list[str]] = {}

    def retry(self, task_id: str, reason: str) -> bool:
        """Record a lost run; True if the model may run again."""
        lost = self._lost.setdefault(task_id, [])
        lost.append(reason)
        return len(lost) <= self.retries

    def last_loss(self, task_id: str) -> str:
        return self._lost[task_id][-1]

    def final(self, row: dict[str, Any]) -> dict[str, Any]:
        """The row of a model's last run, with its earlier, lost runs named."""
        row.pop("worker_lost", None)
        lost = self._lost.get(row["id"], [])
        if not lost:
            return row
        runs = len(lost) + (0 if len(lost) > self.retries else 1)
        row["attempts"] = runs
        row["lost_runs"] = list(lost)
        if len(lost) > self.retries and runs > 1 and row.get("message"):
            row["message"] += f" (lost on each of {runs} attempts)"
        return row


def refusal(task: Task, capacity_mb: float | None, where: str) -> dict[str, Any] | None:
    """The row of a model whose memory need exceeds what `where` offers, or None if it fits."""
    if capacity_mb is None or task.memory_mb <= capacity_mb:
        return None
    source = {"measured": "its last run's peak", "given": "its zoo entry's `memory`"}.get(
        task.memory_source, "estimated from its size"
    )
    return summary.error_row(
        task.id,
        task.model,
        "placement",
        f"needs {memory.describe(task.memory_mb)} ({source}), more than {where} offers "
        f"({memory.describe(capacity_mb)}); not started",
        EXIT_CONVERSION,
    )


def internal_error(task: Task, exc: BaseException) -> dict[str, Any]:
    """A bug in this package while converting one model: that model fails, the batch goes on."""
    where = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return summary.error_row(
        task.id,
        task.model,
        "load",
        f"internal error in tf2torch (please report it): {where}",
        EXIT_CONVERSION,
    )


def finish(
    task: Task, row: dict[str, Any], attempts: Attempts, publish: Callable[[dict], dict] | None = None
) -> dict[str, Any]:
    """A model's final row: its run directory published (`publish`: a Ray slot's, sent back) and its
    cache record written. Failing to write fails this model only, with the reason."""
    try:
        if publish is not None:
            row = publish(row)
        return attempts.final(record_result(task, row))
    except PipelineError as exc:  # e.g. a `convert` holds the run directory's lock
        failed = summary.error_row(task.id, task.model, "load", exc.message, exc.exit_code)
    except OSError as exc:
        why = f"cannot write its results under {task.out_dir}: {exc.strerror or exc}"
        failed = summary.error_row(task.id, task.model, "load", why, EXIT_USAGE)
    return attempts.final(failed)
