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


def convert_task(task: Task, pool) -> dict[str, Any]:
    """Convert one model with the slot's worker pool; record the result for the cache. Runs in the
    executor's slot (a thread locally, an actor on Ray)."""
    from pipeline.config import ModelConfig
    from pipeline.orchestrator import runner

    cfg = ModelConfig.model_validate(task.config)
    out = Path(task.out_dir)
    try:
        result = runner.convert(cfg, task.format, out, pool=pool)
    except OSError as exc:
        return summary.error_row(task.id, cfg.model, "load", f"cannot write to {out}: {exc}", EXIT_USAGE)
    except PipelineError as exc:  # e.g. a `convert` writing to the same run directory holds its lock
        return summary.error_row(task.id, cfg.model, "load", exc.message, exc.exit_code)
    run_dir = Path(result["out_dir"])
    if run_dir != out:
        # A failed run kept beside a passing one: that one's record must not make the next batch
        # skip this model as cached.
        (out / RESULT_JSON).unlink(missing_ok=True)
    row = summary.row_from_report(task.id, result, task.fingerprint)
    if task.prune and row["status"] == Status.PASS:
        # A zoo of large models fills a disk; a failed model keeps everything for debugging.
        row["pruned"] = artifacts.prune_model_files(run_dir)
    # A crash, a timeout or an out-of-memory kill may not happen again: convert that model next time.
    if not any(s.get("worker_failure") for s in result["stages"]):
        artifacts.save_json(run_dir / RESULT_JSON, row)
    return row
