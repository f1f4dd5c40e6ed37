"""One model of a batch as an executor slot converts it: the task (plain data, it may cross to Ray)
and `convert_task`, which runs it with the slot's worker pool and records the result for the cache.
Its own module so that batch.py (which makes the tasks) and executors.py (which run them) both
import it and not each other."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline import artifacts
from pipeline.batching import summary
from pipeline.errors import EXIT_USAGE, PipelineError
from pipeline.records import Status

RESULT_JSON = "result.json"


@dataclass
class Task:
    """One model to convert: everything an executor slot needs, as plain data (it may cross to Ray)."""

    id: str
    config: dict[str, Any]
    format: str
    out_dir: str
    fingerprint: str
    prune: bool = False
    memory_mb: float = 0.0  # what its workers need at their peak (batching/memory.py)
    memory_source: str = "estimated"  # or "measured" (the last run's peak), "given" (the zoo's `memory`)

    @property
    def model(self) -> str:
        return self.config.get("model") or ""

    @property
    def timeout(self) -> float:
        return float(self.config.get("timeout") or 0)


def convert_task(task: Task, pool, out: Path | None = None, progress=None) -> dict[str, Any]:
    """Convert one model with the slot's worker pool into `out` (default: its destination) and return
    its summary row; `row["worker_lost"]` names a worker that died under it (a batch retries those).
    Runs in the executor's slot (a thread locally, an actor on Ray). The caller records the result
    (`record_result`) once the run directory is where it stays. `progress`: runner.convert's."""
    from pipeline.config import ModelConfig
    from pipeline.orchestrator import runner

    cfg = ModelConfig.model_validate(task.config)
    out = out or Path(task.out_dir)
    try:
        result = runner.convert(cfg, task.format, out, progress, pool)
    except OSError as exc:
        return summary.error_row(task.id, cfg.model, "load", f"cannot write to {out}: {exc}", EXIT_USAGE)
    except PipelineError as exc:  # e.g. a `convert` writing to the same run directory holds its lock
        return summary.error_row(task.id, cfg.model, "load", exc.message, exc.exit_code)
    row = summary.row_from_report(task.id, result, task.fingerprint)
    lost = next((s["error"] for s in result["stages"] if s.get("worker_lost")), None)
    if lost:
        row["worker_lost"] = lost
    # A crash, a timeout or an out-of-memory kill may not happen again: convert that model next time.
    row["cacheable"] = not any(s.get("worker_failure") for s in result["stages"])
    if task.prune and row["status"] == Status.PASS:
        # A zoo of large models fills a disk; a failed model keeps everything for debugging.
        row["pruned"] = artifacts.prune_model_files(Path(row["out_dir"]))
    return row


def record_result(task: Task, row: dict[str, Any]) -> dict[str, Any]:
    """Write the cache record of a finished model whose run directory is `row["out_dir"]`; return the
    row as the summary shows it."""
    cacheable = row.pop("cacheable", False)
    if row.get("out_dir") is None:
        return row
    run_dir, destination = Path(row["out_dir"]), Path(task.out_dir)
    if run_dir != destination:
        # A failed run kept beside a passing one: that one's record must not make the next batch
        # skip this model as cached.
        (destination / RESULT_JSON).unlink(missing_ok=True)
    if cacheable:
        artifacts.save_json(run_dir / RESULT_JSON, row)
    return row
