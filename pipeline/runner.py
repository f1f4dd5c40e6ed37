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

from pipeline import __version__, artifacts, report, report_html
from pipeline.compare import StructureMismatch, compare_arrays
from pipeline.config import PAIRS, ModelConfig, resolve_tolerance
from pipeline.errors import EXIT_CONVERSION, EXIT_PASS, EXIT_TOLERANCE
from pipeline.fingerprint import framework_versions
from pipeline.publish import StagedRun
from pipeline.workers import WorkerPool

# Stage order, grouped by the process that runs them. TF stages must finish before torch starts:
# the torch group reads the model.onnx and inputs.npz the TF group writes, and the two frameworks
# cannot be imported into one process.
STAGE_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("tf", ("load", "export")),
    ("torch", ("validate", "import")),
)
# The native model is derived from the imported module, export and training check from the native
# model: each optional, in this order, after `import` (the config key of each has the stage's name).
NATIVE_STAGES = ("native", "torch_export", "torch_compile", "train_check")

# With `gradients: true`, each group gains a stage after its others: TF's gradients need the loaded
# model, torch's the imported module (`tf_gradients` never fails the run: it skips, with the reason).
GRADIENT_STAGES = {"tf": "tf_gradients", "torch": "gradients"}

# Pairs whose arrays exist only when asked for: `training` writes train.py; only a training check
# writes the arrays it is judged on.
# The second-shape pairs exist only for models with unknown dimensions.
_COMPARED_WHEN_ASKED = {"training", "tf_vs_native_second_shape", "tf_vs_exported_second_shape"}

# `training` / `training_check`: the compile settings mapped and TF's steps, then train.py and its steps.
TRAINING_STAGES = {"tf": "tf_training", "torch": "training"}

# Which arrays each stage is judged on: (pair, reference, candidate), the last two keys of
# artifacts.COMPARED. The pair names the tolerance (`tolerances.<pair>`).
STAGE_COMPARISONS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "validate": (("tf_vs_onnx", "tf", "onnx"),),
    "import": (("onnx_vs_torch", "onnx", "torch"), ("tf_vs_torch", "tf", "torch")),
    "gradients": (("gradients", "tf_gradients", "torch_gradients"),),
    "native": (
        ("onnx_vs_native", "onnx", "native"),
        ("tf_vs_native", "tf", "native"),
        ("tf_vs_native_second_shape", "tf_second_shape", "native_second_shape"),
    ),
    "torch_export": (
        ("onnx_vs_exported", "onnx", "exported"),
        ("tf_vs_exported_second_shape", "tf_second_shape", "exported_second_shape"),
    ),
    "torch_compile": (("onnx_vs_compiled", "onnx", "compiled"),),
    "port": (("tf_vs_port", "tf", "port"),),
    "training": (("training", "tf_training", "torch_training"),),
}

# `tf2torch verify`: TF writes the reference outputs, the Keras variables and per-layer values; the
# torch worker builds the hand-written port, transfers the weights into it and runs it.
VERIFY_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("tf", ("port_load",)),
    ("torch", ("port",)),
)

# Localisation runs after the stages, when a comparison failed (or always, if configured): the TF
# worker writes TF's intermediate values, then the torch worker computes onnxruntime's and torch's and
# compares all three. It only explains a verdict; it never changes one.
LOCALIZE_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("tf", ("localize_tf",)),
    ("torch", ("localize",)),
)

Progress = Callable[[dict[str, Any]], None]


def convert(
    cfg: ModelConfig,
    fmt: str,
    out: Path,
    progress: Progress | None = None,
    pool: WorkerPool | None = None,
    groups: tuple[tuple[str, tuple[str, ...]], ...] | None = None,
) -> dict[str, Any]:
    """Run every stage for one model; return the report (also written to report.json in the run
    directory, `result["out_dir"]`: `out`, or `out.failed` if the run failed and `out` holds a passing
    run, which is kept; see pipeline/publish.py).

    `progress` is called with each stage record as soon as that stage is judged (skipped ones too).
    `pool` supplies the worker processes; without one, fresh workers serve this model only.
    `groups` replaces the conversion's stages (`verify` runs its own)."""
    if pool is None:
        with WorkerPool() as own:
            return convert(cfg, fmt, out, progress, own, groups)
    what = "tf2torch verify" if groups is VERIFY_GROUPS else "tf2torch convert"
    with StagedRun(out, what) as staged:
        result = _run_stages(cfg, fmt, staged.path, progress, pool, groups)
        passed = result["status"] == "pass"
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
    cfg: ModelConfig,
    fmt: str,
    out: Path,
    progress: Progress | None,
    pool: WorkerPool,
    groups: tuple[tuple[str, tuple[str, ...]], ...] | None,
) -> dict[str, Any]:
    """The stages and the localisation, run in the (fresh, empty) directory `out`; the report's data."""
    progress = progress or (lambda record: None)
    pool.prestart(group for group, _ in groups or stage_groups(cfg))
    (out / artifacts.LOG_DIR).mkdir()
    started = time.time()
    stages: list[dict[str, Any]] = []
    workers: dict[str, dict[str, Any]] = {}
    for group, names in groups or stage_groups(cfg):
        failed = any(s["status"] == "error" for s in stages)
        for record in () if failed else _run_group(group, names, cfg, fmt, out, workers, pool):
            if record["status"] == "pass":
                _judge(record, cfg, out)
            stages.append(record)
            progress(record)
        done = {s["name"] for s in stages}
        for name in names:
            if name not in done:
                stages.append(_skipped(name, "an earlier stage failed"))
                progress(stages[-1])
    result = {
        "tool": "tf2torch verify" if groups is VERIFY_GROUPS else "tf2torch",
        "tool_version": __version__,
        "model": cfg.model,
        "format": fmt,
        "started_at": datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
        "seconds": round(time.time() - started, 3),
        "versions": _versions(),
        "config": cfg.model_dump(mode="json"),
        "inputs": next(
            (
                s["details"].get("inputs")
                for s in stages
                if s["name"] in ("load", "port_load") and s["details"]
            ),
            None,
        ),
        "stages": stages,
        "workers": workers,
    }
    result["status"], result["exit_code"] = _overall(stages)
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
    return convert(cfg, fmt, out, progress, pool, VERIFY_GROUPS)


def stage_groups(cfg: ModelConfig) -> tuple[tuple[str, tuple[str, ...]], ...]:
    native = tuple(name for name in NATIVE_STAGES if cfg.native and getattr(cfg, name))
    groups = tuple((g, (*names, *native) if g == "torch" else names) for g, names in STAGE_GROUPS)
    if cfg.gradients:
        groups = tuple((group, (*names, GRADIENT_STAGES[group])) for group, names in groups)
    if cfg.writes_train_py:
        # Last in each group: the TF steps change the Keras model's weights.
        groups = tuple((group, (*names, TRAINING_STAGES[group])) for group, names in groups)
    return groups


def localize(
    cfg: ModelConfig, fmt: str, out: Path, stages: list[dict[str, Any]], pool: WorkerPool
) -> dict[str, Any] | None:
    """Name the op where outputs part ways, per stage pair; None when localisation is not wanted."""
    if cfg.localize == "never":
        return None
    compared = [c for s in stages for c in s["comparisons"]]
    # Gradients are not localised: only a failing output comparison makes `auto` run.
    failing_pairs = {c["pair"] for c in compared if not c["passed"]} & set(PAIRS)
    if cfg.localize == "auto" and not failing_pairs:
        return None
    validated = any(s["name"] == "validate" and s["status"] in ("pass", "tolerance_fail") for s in stages)
    if not validated:
        return {"status": "skipped", "reason": "the ONNX model did not run in onnxruntime", "pairs": {}}
    started = time.monotonic()
    (out / artifacts.LOCALIZE_TF_VALUES).unlink(missing_ok=True)  # an earlier localisation's
    want_tf = cfg.localize == "always" or bool(failing_pairs & {"tf_vs_onnx", "tf_vs_torch"})
    workers: dict[str, Any] = {}
    tf_note = "not needed: TF and onnxruntime agree" if not want_tf else None
    pairs: dict[str, Any] = {}
    for group, names in LOCALIZE_GROUPS:
        if group == "tf" and not want_tf:
            continue
        for record in _run_group(group, names, cfg, fmt, out, workers, pool, label=f"localize-{group}"):
            if record["status"] == "error":
                return {"status": "error", "error": f"{record['name']}: {record['error']}", "pairs": pairs}
            details = record["details"] or {}
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


def _overall(stages: list[dict[str, Any]]) -> tuple[str, int]:
    errors = [s for s in stages if s["status"] == "error"]
    if errors:
        return "error", errors[0].get("exit_code", EXIT_CONVERSION)
    if any(s["status"] == "tolerance_fail" for s in stages):
        return "tolerance_fail", EXIT_TOLERANCE
    return "pass", EXIT_PASS


def _skipped(name: str, reason: str) -> dict[str, Any]:
    return {
        "name": name,
        "status": "skipped",
        "seconds": 0.0,
        "error": None,
        "reason": reason,
        "details": None,
        "comparisons": [],
    }


def _judge(record: dict[str, Any], cfg: ModelConfig, out: Path) -> None:
    """Compare this stage's outputs with the earlier stages' and set its status accordingly."""
    for pair, ref_key, cand_key in STAGE_COMPARISONS.get(record["name"], ()):
        if pair in _COMPARED_WHEN_ASKED and not (out / artifacts.COMPARED[cand_key]).is_file():
            continue
        reference = artifacts.load_arrays(out / artifacts.COMPARED[ref_key])
        candidate = artifacts.load_arrays(out / artifacts.COMPARED[cand_key])
        if list(reference) != list(candidate):
            record.update(
                status="error",
                exit_code=EXIT_CONVERSION,
                error=f"{pair}: outputs {list(candidate)} do not match the reference outputs {list(reference)}",
            )
            return
        for name in reference:
            row = {"pair": pair, "reference": ref_key, "candidate": cand_key, "output": name}
            tol = resolve_tolerance(cfg.tolerances, pair, name)
            try:
                row.update(compare_arrays(reference[name], candidate[name], tol))
            except StructureMismatch as exc:
                row.update(passed=False, error=str(exc))
                # A port with the wrong output shape is a port that does not match (exit 1); a converted
                # model with one is a conversion that went wrong (exit 3).
                port = pair == "tf_vs_port"
                record.update(
                    status="tolerance_fail" if port else "error",
                    exit_code=EXIT_TOLERANCE if port else EXIT_CONVERSION,
                    error=f"{pair} output '{name}': {exc}",
                )
            record["comparisons"].append(row)
    mistakes = (record.get("details") or {}).get("errors")
    if record["status"] == "pass" and mistakes:
        # `verify`: a port mistake found for certain (padding, gates, batch axis) fails the port even
        # where these inputs happen not to show it in the outputs.
        record["status"] = "tolerance_fail"
        record["error"] = (
            f"the outputs match on these inputs, but {mistakes} mistake(s) were found in the port"
        )
    if record["status"] == "pass" and not all(c["passed"] for c in record["comparisons"]):
        record["status"] = "tolerance_fail"
        bad = [f"{c['pair']} '{c['output']}'" for c in record["comparisons"] if not c["passed"]]
        record["error"] = "outside tolerance: " + _some(bad)
        # A stage may name what it suspects (the training check: optimizer settings that differ).
        suspects = (record.get("details") or {}).get("suspects")
        if suspects:
            record["error"] += "; likely cause: " + "; ".join(suspects)


# A training check compares hundreds of parameters: the message names the first few, report.md all.
_NAMED_FAILURES = 5


def _some(names: list[str]) -> str:
    if len(names) <= _NAMED_FAILURES:
        return ", ".join(names)
    shown = ", ".join(names[:_NAMED_FAILURES])
    return f"{shown} and {len(names) - _NAMED_FAILURES} more ({len(names)} comparisons; report.md lists them)"


def _run_group(
    group: str,
    names: tuple[str, ...],
    cfg: ModelConfig,
    fmt: str,
    out: Path,
    workers: dict[str, Any],
    pool: WorkerPool,
    label: str | None = None,
) -> Iterator[dict[str, Any]]:
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
    worker = pool.get(group)
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
        pool.after_job(group, usage.get("rss_mb"))
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
        yield {
            "name": current or names[min(reported, len(names) - 1)],
            "status": "error",
            "seconds": seconds if current else 0.0,
            "error": why,
            "exit_code": EXIT_CONVERSION,
            "worker_failure": True,  # the worker died or timed out: may not happen on a re-run
            "details": None,
            "comparisons": [],
        }


def _record(event: dict[str, Any], group: str) -> dict[str, Any]:
    record = {
        "name": event["stage"],
        "status": "pass",
        "seconds": round(event["seconds"], 3),
        "error": None,
        "details": event.get("details"),
        "comparisons": [],
    }
    skipped = (event.get("details") or {}).get("skipped") if event["event"] == "done" else None
    if skipped:
        record.update(status="skipped", reason=skipped)
    if event["event"] == "error":
        error = event["error"]
        if event.get("traceback"):
            error += f" (traceback in {artifacts.LOG_DIR}/{group}.log)"
        record.update(status="error", error=error, exit_code=event["exit_code"])
    return record


def _versions() -> dict[str, str | None]:
    return {"python": sys.version.split()[0], **framework_versions()}
