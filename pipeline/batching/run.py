"""`tf2torch batch ZOO`: convert every model of a zoo file, reuse unchanged results, write one summary.

Each model's result goes to OUT/<id>/ (its artifacts and report, as `convert` writes them) plus
OUT/<id>/result.json, written atomically when the model finishes: the cache record, keyed by the
model's fingerprint. A re-run, or a run resumed after a kill, reuses every result whose fingerprint
still matches and converts the rest. Imports neither TensorFlow nor torch: the conversions run in
worker processes (locally or on Ray), and an unchanged zoo is answered from the cache alone.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline import artifacts
from pipeline.batching import memory, summary
from pipeline.batching.progress import make_progress
from pipeline.batching.remote_out import RemoteOut
from pipeline.batching.task import RESULT_JSON, Task
from pipeline.batching.zoo_file import ZooEntry, read_zoo
from pipeline.errors import EXIT_CONVERSION, PipelineError, UsageError, first_line
from pipeline.fingerprint import fingerprint
from pipeline.formats import detect_format
from pipeline.orchestrator.lock import batch_lock
from pipeline.records import Status

EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130


@dataclass
class BatchOptions:
    zoo: Path
    out: Path
    workers: int
    executor: str = "local"
    ray_address: str | None = None
    force: bool = False
    baseline: Path | None = None
    history: Path | None = None  # earlier runs' summaries, one folder each: the dashboard's trend
    max_rss_mb: float | None = None
    retries: int = 2  # reruns of a model whose worker or node was lost
    max_memory_mb: float | None = None  # the local slots' memory budget (default: what is available)
    prune: bool = False  # delete a passing model's model files (artifacts.MODEL_FILES)
    progress: Any = None  # a pipeline.batching.progress reporter; default: chosen for stdout
    pool: Any = None  # a caller's warm WorkerPool for a single local slot (cli.main's `pool`)
    out_url: str | None = None  # --out as an fsspec URL; `out` is then its local staging directory


def run_batch(options: BatchOptions) -> tuple[dict[str, Any], int]:
    """Run the batch; return the summary and the exit code (0 all passed, 1 a failure or regression)."""
    started = time.time()
    zoo = read_zoo(options.zoo)
    baseline = summary.load_baseline(options.baseline) if options.baseline else None
    if options.history is not None and not options.history.is_dir():
        raise UsageError(
            f"--history {options.history} is not a directory (give the folder that holds earlier runs, "
            "one summary.json each, as scripts/nightly.sh keeps them)"
        )
    try:
        options.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the output directory {options.out}: {exc.strerror or exc}") from None
    rows: dict[str, dict[str, Any]] = {}
    interrupted = 0  # the exit code when the batch was stopped
    remote = RemoteOut(options.out_url, options.out) if options.out_url else None
    with batch_lock(options.out):
        if remote is not None:
            remote.pull_records([e.id for e in zoo.entries])
        tasks = _plan(zoo.entries, options, rows)
        progress = options.progress or make_progress()
        progress.begin(total=len(zoo.entries), already=[rows[e.id] for e in zoo.entries if e.id in rows])
        if tasks:
            from pipeline.batching.executors import make_executor

            executor = make_executor(
                options.executor,
                options.workers,
                options.max_rss_mb or zoo.max_rss_mb,
                options.ray_address,
                options.pool,
                options.retries,
                options.max_memory_mb,
            )
            try:
                # A caller's own reporter may predate `retrying`.
                on_retry = getattr(progress, "retrying", None)
                for row in executor.run(tasks, on_start=progress.started, on_retry=on_retry):
                    if remote is not None:
                        _upload(remote, row)
                    rows[row["id"]] = row
                    progress.finished(row)
            except KeyboardInterrupt:
                interrupted = EXIT_INTERRUPTED
            except SystemExit as exc:  # SIGTERM (the command line turns it into SystemExit)
                interrupted = exc.code if isinstance(exc.code, int) else EXIT_INTERRUPTED
            except Exception as exc:  # the executor itself failed (a Ray head gone): keep the summary
                for task in tasks:
                    if task.id not in rows:
                        why = f"not converted: the {options.executor} executor failed: {first_line(exc)}"
                        rows[task.id] = summary.error_row(task.id, task.model, "load", why, EXIT_CONVERSION)
            finally:
                _close_quietly(executor)
        ordered = [
            rows.get(e.id)
            or summary.skipped_row(e.id, e.config.model, Status.INTERRUPTED, "the batch was stopped")
            for e in zoo.entries
        ]
        found = summary.regressions(ordered, baseline, zoo.regression_factor) if baseline is not None else []
        result = {
            "tool": "tf2torch batch",
            "zoo": str(options.zoo),
            "out_dir": options.out_url or str(options.out),
            "executor": options.executor,
            "workers": options.workers,
            "started_at": datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
            "seconds": round(time.time() - started, 3),
            "baseline": str(options.baseline) if options.baseline else None,
            "regression_factor": zoo.regression_factor,
            "totals": summary.totals(ordered, found),
            "regressions": found,
            "models": ordered,
        }
        summary.write(options.out, result, summary.load_history(options.history, options.baseline))
        if remote is not None:
            try:
                remote.push_summary(result)
            except Exception as exc:  # the storage's own errors (network, permissions) vary by library
                raise UsageError(
                    f"could not upload the summary to {options.out_url}: {first_line(exc)} "
                    f"(it is in {options.out})"
                ) from None
    progress.end(result)
    if interrupted:
        return result, interrupted
    failed = result["totals"]["failed"] or result["totals"]["regressions"]
    return result, EXIT_FAILED if failed else EXIT_OK


def _upload(remote: RemoteOut, row: dict[str, Any]) -> None:
    try:
        remote.push_run(row)
    except Exception as exc:  # the storage's own errors vary by library: keep the batch going
        row.setdefault("warnings", []).append(
            f"its run directory was not uploaded to {remote.url}: {first_line(exc)} (it stays in {row['out_dir']})"
        )


def _close_quietly(executor) -> None:
    try:
        executor.close()
    except Exception as exc:  # the summary matters more than a clean shutdown of a broken cluster
        print(
            f"tf2torch batch: closing the {type(executor).__name__} failed: {first_line(exc)}",
            file=sys.stderr,
        )


def _plan(entries: list[ZooEntry], options: BatchOptions, rows: dict[str, dict[str, Any]]) -> list[Task]:
    """Fill `rows` with what needs no conversion (disabled, cached, unusable entries); return the rest."""
    tasks = []
    for entry in entries:
        if entry.disabled:
            rows[entry.id] = summary.skipped_row(entry.id, entry.config.model, Status.SKIPPED, entry.disabled)
            continue
        try:
            fmt = detect_format(entry.config.model, entry.config.format)
        except PipelineError as exc:  # a missing or unreadable model file fails this entry, not the batch
            rows[entry.id] = summary.error_row(
                entry.id, entry.config.model, "load", exc.message, exc.exit_code
            )
            continue
        key = fingerprint(entry.config)
        out_dir = options.out / entry.id
        cached = None if options.force else _cached(out_dir, key)
        if cached is not None:
            rows[entry.id] = {**cached, "cached": True}
            continue
        need, source = memory.need_mb(entry.config.model, out_dir, entry.memory_mb)
        config = entry.config.model_dump(mode="json")
        tasks.append(Task(entry.id, config, fmt, str(out_dir), key, options.prune, need, source))
    return tasks


def _cached(out_dir: Path, key: str) -> dict[str, Any] | None:
    try:
        row = json.loads((out_dir / RESULT_JSON).read_text())
    except (OSError, ValueError):
        return None
    if row.get("fingerprint") != key or not (out_dir / artifacts.REPORT_JSON).exists():
        return None
    return row
