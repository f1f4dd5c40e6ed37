"""Orchestrator for one model: runs the stage groups in worker processes, compares their outputs and
writes the report. Imports neither TensorFlow nor torch."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline import __version__, artifacts, formats, plan
from pipeline.compare import StructureMismatch, compare_arrays
from pipeline.config import ModelConfig, resolve_tolerance
from pipeline.errors import EXIT_CONVERSION, EXIT_PASS, EXIT_TOLERANCE, ConfigError
from pipeline.fingerprint import framework_versions
from pipeline.orchestrator.pool import WorkerPool
from pipeline.orchestrator.publish import StagedRun
from pipeline.records import ComparisonRow, StageRecord, Status
from pipeline.reports import html as report_html
from pipeline.reports import markdown as report
from pipeline.worker import worker_name as process_name

Progress = Callable[[dict[str, Any]], None]


def convert(
    cfg: ModelConfig,
    fmt: str,
    out: Path,
    progress: Progress | None = None,
    pool: WorkerPool | None = None,
    job: plan.Plan = plan.CONVERT,
) -> dict[str, Any]:
    """Run every stage of `job` (the conversion's, or `verify`'s) for one model; return the report
    (also written to report.json in the run directory, `result["out_dir"]`: `out`, or `out.failed` if
    the run failed and `out` holds a passing run, which is kept; see orchestrator/publish.py).

    `progress` is called with each stage record (report.json's form) as soon as that stage is judged
    (skipped ones too). `pool` supplies the worker processes; without one, fresh workers serve this
    model only."""
    if pool is None:
        with WorkerPool() as own:
            return convert(cfg, fmt, out, progress, own, job)
    with StagedRun(out, job.command) as staged:
        result = _run_stages(cfg, fmt, staged.path, progress, pool, job)
        passed = result["status"] == Status.PASS
        final = staged.final_path(passed)
        result["out_dir"] = str(final)
        if final != out:
            result["kept_passing_run"] = str(out)
        artifacts.save_json(staged.path / artifacts.REPORT_JSON, result)
        artifacts.save_text(staged.path / artifacts.REPORT_MD, report.markdown(result))
        report_html.write(staged.path, result)
        staged.publish(passed)
    return result


def _run_stages(
    cfg: ModelConfig, fmt: str, out: Path, progress: Progress | None, pool: WorkerPool, job: plan.Plan
) -> dict[str, Any]:
    """The stages and the localisation, run in the (fresh, empty) directory `out`; the report's data."""
    progress = progress or (lambda record: None)
    groups = job.groups(cfg)
    pool.prestart(worker_name(group, cfg, fmt) for group, _ in groups)
    (out / artifacts.LOG_DIR).mkdir()
    started = time.time()
    stages: list[StageRecord] = []
    workers: dict[str, dict[str, Any]] = {}
    for group, names in groups:
        failed = any(s.status == Status.ERROR for s in stages)
        refused: StageRecord | None = None
        for record in () if failed else _run_group(group, names, cfg, fmt, out, workers, pool):
            if record.config_error:
                refused = record  # the group runs to its end (the worker stops after an error)
                continue
            if record.status == Status.PASS:
                _judge(record, cfg, out)
            stages.append(record)
            progress(record.to_json())
        if refused is not None:
            # The config contradicts the model: a user's mistake, as a bad config file is. Exit 2 with
            # the message, and nothing is published (the staging directory is discarded).
            raise ConfigError(refused.error or "the config does not fit the model")
        done = {s.name for s in stages}
        for name in names:
            if name not in done:
                stages.append(StageRecord.skipped(name, "an earlier stage failed"))
                progress(stages[-1].to_json())
    loaded = next((s for s in stages if s.name in ("load", "port_load") and s.details), None)
    result = {
        "tool": job.tool,
        "tool_version": __version__,
        "model": cfg.model,
        "format": fmt,
        "started_at": datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
        "seconds": round(time.time() - started, 3),
        "versions": _versions(),
        "config": cfg.model_dump(mode="json"),
        "inputs": loaded.details.get("inputs") if loaded else None,
        "stages": [s.to_json() for s in stages],
        "workers": workers,
    }
    result["status"], result["exit_code"] = _overall(stages)
    # What a stage saw but does not fail on: a branch or mask the samples never exercised.
    result["warnings"] = [w for s in stages for w in _warnings(s)]
    if (out / artifacts.PORT_MAPPING).is_file():
        result["port"] = artifacts.load_json(out / artifacts.PORT_MAPPING)
    localization = localize(cfg, fmt, out, stages, pool)
    if localization is not None:
        result["localization"] = localization
    return result


def verify(
    cfg: ModelConfig, fmt: str, out: Path, progress: Progress | None = None, pool: WorkerPool | None = None
) -> dict[str, Any]:
    """Check a hand-written port (cfg.torch_module) against the TF model: transfer the weights, compare
    the outputs (pair tf_vs_port). The report carries the mapping table and the findings."""
    # Localisation follows ONNX nodes, which verify has none of; the native passes do not apply.
    cfg = cfg.model_copy(update={"localize": "never", "native": False, "layout": "nhwc"})
    return convert(cfg, fmt, out, progress, pool, plan.VERIFY)


def localize(
    cfg: ModelConfig, fmt: str, out: Path, stages: list[StageRecord], pool: WorkerPool
) -> dict[str, Any] | None:
    """Name the op where outputs part ways, per stage pair; None when localisation is not wanted."""
    if cfg.localize == "never":
        return None
    compared = [c for s in stages for c in s.comparisons]
    # Gradients are not localised: only a failing output comparison makes `auto` run.
    failing_pairs = {c.pair for c in compared if not c.passed} & set(plan.OUTPUT_PAIRS)
    if cfg.localize == "auto" and not failing_pairs:
        return None
    validated = any(s.name == "validate" and s.status in (Status.PASS, Status.TOLERANCE_FAIL) for s in stages)
    if not validated:
        return {"status": "skipped", "reason": "the ONNX model did not run in onnxruntime", "pairs": {}}
    started = time.monotonic()
    (out / artifacts.LOCALIZE_TF_VALUES).unlink(missing_ok=True)  # an earlier localisation's
    want_tf = cfg.localize == "always" or bool(failing_pairs & plan.PAIRS_AGAINST_TF)
    workers: dict[str, Any] = {}
    tf_note = "not needed: TF and onnxruntime agree" if not want_tf else None
    pairs: dict[str, Any] = {}
    for group, names in plan.LOCALIZE.groups():
        if group == "tf" and not want_tf:
            continue
        for record in _run_group(group, names, cfg, fmt, out, workers, pool, label=f"localize-{group}"):
            if record.status == Status.ERROR:
                return {"status": "error", "error": f"{record.name}: {record.error}", "pairs": pairs}
            details = record.details or {}
            if group == "tf" and details.get("skipped"):
                tf_note = details["skipped"]
            pairs.update(details.get("pairs", {}))
    if tf_note and "tf_vs_onnx" in pairs:
        pairs["tf_vs_onnx"] = {"status": "skipped", "reason": tf_note}
    return {
        "status": "done",
        "pairs": pairs,
        "seconds": round(time.monotonic() - started, 3),
        "workers": workers,
    }


def _warnings(record: StageRecord) -> list[str]:
    """A stage's warning messages (`verify`'s port stage counts its findings under the same key)."""
    found = (record.details or {}).get("warnings")
    return found if isinstance(found, list) else []


def _overall(stages: list[StageRecord]) -> tuple[str, int]:
    errors = [s for s in stages if s.status == Status.ERROR]
    if errors:
        code = errors[0].exit_code
        return str(Status.ERROR), EXIT_CONVERSION if code is None else code
    if any(s.status == Status.TOLERANCE_FAIL for s in stages):
        return str(Status.TOLERANCE_FAIL), EXIT_TOLERANCE
    return str(Status.PASS), EXIT_PASS


def _judge(record: StageRecord, cfg: ModelConfig, out: Path) -> None:
    """Compare this stage's outputs with the earlier stages' (the plan's comparisons of the stage) and
    set its status accordingly."""
    for compared in plan.STAGES[record.name].compares:
        if compared.optional and not (out / artifacts.COMPARED[compared.candidate]).is_file():
            continue
        if not _compare(record, compared, cfg, out):
            return
    mistakes = (record.details or {}).get("errors")
    if record.status == Status.PASS and mistakes:
        # `verify`: a port mistake found for certain (padding, gates, batch axis) fails the port even
        # where these inputs happen not to show it in the outputs.
        record.status = Status.TOLERANCE_FAIL
        record.error = f"the outputs match on these inputs, but {mistakes} mistake(s) were found in the port"
    if record.status == Status.PASS and not all(c.passed for c in record.comparisons):
        record.status = Status.TOLERANCE_FAIL
        bad = [f"{c.pair} '{c.output}'" for c in record.comparisons if not c.passed]
        record.error = "outside tolerance: " + _some(bad)
        # A stage may name what it suspects (the training check: optimizer settings that differ).
        suspects = (record.details or {}).get("suspects")
        if suspects:
            record.error += "; likely cause: " + "; ".join(suspects)
    todos = (record.details or {}).get("todos") if record.name == plan.WRITES_TRAIN_PY else None
    if todos and not cfg.training_allow_todos and record.status in (Status.PASS, Status.TOLERANCE_FAIL):
        # train.py leaves out a part of what Keras trains: never a pass unless the user accepts it.
        note = (
            f"train.py has {len(todos)} TODO(s), Keras settings it does not carry over: {_some(todos)}; "
            "set `training_allow_todos: true` (--training-allow-todos) to accept them"
        )
        record.error = f"{record.error}; {note}" if record.status == Status.TOLERANCE_FAIL else note
        record.status = Status.TOLERANCE_FAIL


def _compare(record: StageRecord, compared: plan.Compared, cfg: ModelConfig, out: Path) -> bool:
    """Add one comparison's rows to `record`; False when its outputs do not even line up (then the
    record is an error and no further comparison of it means anything)."""
    reference = artifacts.load_arrays(out / artifacts.COMPARED[compared.reference])
    candidate = artifacts.load_arrays(out / artifacts.COMPARED[compared.candidate])
    if list(reference) != list(candidate):
        record.fail(
            Status.ERROR,
            EXIT_CONVERSION,
            f"{compared.pair}: outputs {list(candidate)} do not match the reference outputs {list(reference)}",
        )
        return False
    for name in reference:
        row = ComparisonRow(compared.pair, compared.reference, compared.candidate, name)
        tol = resolve_tolerance(cfg.tolerances, compared.pair, name)
        try:
            row.figures = compare_arrays(reference[name], candidate[name], tol)
            row.passed = bool(row.figures.pop("passed"))
        except StructureMismatch as exc:
            row.error = str(exc)
            wrong_shape = Status(compared.wrong_shape)
            code = EXIT_TOLERANCE if wrong_shape == Status.TOLERANCE_FAIL else EXIT_CONVERSION
            record.fail(wrong_shape, code, f"{compared.pair} output '{name}': {exc}")
        record.comparisons.append(row)
    return True


# A training check compares hundreds of parameters: the message names the first few, report.md all.
_NAMED_FAILURES = 5


def _some(names: list[str]) -> str:
    if len(names) <= _NAMED_FAILURES:
        return ", ".join(names)
    shown = ", ".join(names[:_NAMED_FAILURES])
    return f"{shown} and {len(names) - _NAMED_FAILURES} more ({len(names)} comparisons; report.md lists them)"


def worker_name(group: str, cfg: ModelConfig, fmt: str) -> str:
    """The pool's worker for a group of stages: the TF stages of a model that needs a process-wide
    TensorFlow setting run in a worker started with it (worker.WORKER_SETTINGS): Keras 2 models
    (formats.needs_keras2), and `tf_onednn: false`."""
    settings = []
    if group == "tf":
        settings += ["keras2"] if formats.needs_keras2(fmt, cfg.model) else []
        settings += [] if cfg.tf_onednn else ["no-onednn"]
    return process_name(group, settings)


def _run_group(
    group: str,
    names: tuple[str, ...],
    cfg: ModelConfig,
    fmt: str,
    out: Path,
    workers: dict[str, Any],
    pool: WorkerPool,
    label: str | None = None,
) -> Iterator[StageRecord]:
    """Run one group's stages in the pool's worker; yield each stage's record as soon as the worker
    reports it. The group's wall time, peak memory and, if the worker died, its exit status go into
    `workers[group]`."""
    started = time.monotonic()
    log_path = (out / artifacts.LOG_DIR / f"{label or group}.log").resolve()
    log_path.write_text("")
    log_name = f"{artifacts.LOG_DIR}/{log_path.name}"  # the run directory moves when it is published
    job_path = out / artifacts.LOG_DIR / f"{label or group}-job.json"
    artifacts.save_json(
        job_path,
        {
            "config": cfg.model_dump(mode="json"),
            "format": fmt,
            "out_dir": str(out.resolve()),
            "stages": list(names),
            "log_path": str(log_path),
        },
    )
    process = worker_name(group, cfg, fmt)
    worker = pool.get(process)
    reported = 0
    current: str | None = None
    stage_started = time.monotonic()
    timed_out = finished = False
    usage: dict[str, Any] = {}
    # `timeout` bounds the whole job, `stage_timeouts` a stage of it: the nearer of the two applies.
    job_deadline = time.monotonic() + cfg.timeout
    deadline = [job_deadline]
    events = worker.run(job_path.resolve(), log_path, deadline=lambda: deadline[0])
    try:
        for event in events:
            if event["event"] == "start":
                current, stage_started = event["stage"], time.monotonic()
                limit = cfg.stage_timeouts.get(current)
                deadline[0] = min(job_deadline, stage_started + limit) if limit else job_deadline
            elif event["event"] == "timeout":
                timed_out = True
            elif event["event"] == "job_end":
                finished = True
                usage = event
            else:
                deadline[0] = job_deadline
                yield _record(event, group)
                reported += 1
                current = None
    finally:
        if not finished and worker.alive:
            worker.kill()  # the caller stopped listening (interrupt): leave no worker behind
        workers[group] = {
            "pid": worker.proc.pid,  # the same across models while a batch slot reuses its worker
            "seconds": round(time.monotonic() - started, 3),
            "peak_rss_mb": usage.get("peak_rss_mb") or round(worker.peak_rss_kb / 1024, 1),
        }
        if worker.returncode is not None:
            workers[group]["returncode"] = worker.returncode
        pool.after_job(process, usage.get("rss_mb"))
    returncode = worker.returncode
    if not finished:
        seconds = round(time.monotonic() - stage_started, 3)
        limit = cfg.stage_timeouts.get(current or "")
        if timed_out and limit and stage_started + limit <= job_deadline:
            why = (
                f"timed out after {limit:g} s in stage {current} (raise `stage_timeouts.{current}` in the "
                "config if the model needs longer)"
            )
        elif timed_out:
            why = (
                f"timed out after {cfg.timeout:g} s (raise `timeout` in the config if the model needs longer)"
            )
        elif returncode is not None and returncode < 0:
            name = signal.Signals(-returncode).name
            hint = "; SIGKILL usually means the machine ran out of memory" if name == "SIGKILL" else ""
            why = f"the {group} worker was killed by {name} (see {log_name}{hint})"
        else:
            why = f"the {group} worker exited with code {returncode} (see {log_name})"
        yield StageRecord(
            current or names[min(reported, len(names) - 1)],
            Status.ERROR,
            seconds=seconds if current else 0.0,
            error=why,
            exit_code=EXIT_CONVERSION,
            worker_failure=True,
            worker_lost=not timed_out,
        )


def _record(event: dict[str, Any], group: str) -> StageRecord:
    record = StageRecord(
        event["stage"],
        seconds=round(event["seconds"], 3),
        details=event.get("details"),
        memory_mb=event.get("memory_mb"),
    )
    skipped = (event.get("details") or {}).get("skipped") if event["event"] == "done" else None
    if skipped:
        record.status, record.reason = Status.SKIPPED, skipped
    if event["event"] == "error":
        record.config_error = bool(event.get("config_error"))
        error = event["error"]
        if event.get("traceback"):
            error += f" (traceback in {artifacts.LOG_DIR}/{group}.log)"
        record.fail(Status.ERROR, event["exit_code"], error)
    return record


def _versions() -> dict[str, str | None]:
    return {"python": sys.version.split()[0], **framework_versions()}
