"""The Python API: `convert`, `verify` and `batch` as functions that return typed results, for
notebooks and scripts. The command line (pipeline/cli.py) is a thin layer over these functions: it
parses flags into their arguments and prints what they return.

    import pipeline
    result = pipeline.convert("demo.cnn", out="runs/cnn")
    result.status, result.artifacts["model.py"], result.stage("native").seconds

A user mistake (a missing model file, an unknown config key, a bad argument) raises
`pipeline.PipelineError` (a `UsageError` or `ConfigError`, with `.message` and `.exit_code`); a model that
fails to convert or falls outside tolerance is a result with that status, not an exception. Imports
neither TensorFlow nor torch: the stages run in worker processes, so a notebook that has imported
either can still call these functions.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline import artifacts
from pipeline.config import ModelConfig, load_config
from pipeline.errors import CANNOT_WRITE_ERRNOS, UsageError
from pipeline.formats import detect_format
from pipeline.orchestrator import runner
from pipeline.orchestrator.pool import WorkerPool
from pipeline.records import FAILED, ComparisonRow, StageRecord, Status, worst_by_pair

PathLike = str | Path
# The files a run can leave, by the name users know them by; `artifacts` lists those that exist.
_ARTIFACT_FILES = (
    artifacts.REPORT_JSON,
    artifacts.REPORT_MD,
    artifacts.REPORT_HTML,
    artifacts.ONNX_MODEL,
    artifacts.ONNX_DATA,
    artifacts.TORCH_MODEL,
    artifacts.NATIVE_CODE,
    artifacts.NATIVE_WEIGHTS,
    artifacts.WEIGHTS_MAP,
    artifacts.EXPORTED_PROGRAM,
    artifacts.TRAIN_SCRIPT,
    artifacts.INPUTS,
)


@dataclass(frozen=True)
class ConversionResult:
    """One model's run (`convert` or `verify`), as its report.json holds it."""

    model: str
    format: str
    status: Status
    exit_code: int  # what `tf2torch convert` exits with: 0 pass, 1 tolerance, 2/3 errors
    out_dir: Path
    seconds: float
    stages: list[StageRecord]
    report: dict[str, Any] = field(repr=False)  # the whole report.json

    @classmethod
    def from_report(cls, report: Mapping[str, Any]) -> ConversionResult:
        """The result a report.json holds (its parsed content)."""
        return cls(
            model=report["model"],
            format=report["format"],
            status=Status(report["status"]),
            exit_code=report["exit_code"],
            out_dir=Path(report["out_dir"]),
            seconds=report["seconds"],
            stages=[StageRecord.from_json(s) for s in report["stages"]],
            report=dict(report),
        )

    @property
    def passed(self) -> bool:
        """Every stage passed (status `pass`, exit code 0)."""
        return self.status == Status.PASS

    @property
    def warnings(self) -> list[str]:
        """What a stage saw but did not fail on: an If branch, a mask or a Loop the samples never
        exercised (report.md's Warnings)."""
        return list(self.report.get("warnings") or [])

    @property
    def failed_stage(self) -> StageRecord | None:
        """The first stage that failed (its `.error` says why), or None."""
        return next((s for s in self.stages if s.status in FAILED), None)

    def stage(self, name: str) -> StageRecord:
        """The record of stage `name`: status, seconds, error, details, comparisons (KeyError if the
        run has no such stage)."""
        for record in self.stages:
            if record.name == name:
                return record
        raise KeyError(f"no stage '{name}' in this run; stages: {', '.join(s.name for s in self.stages)}")

    @property
    def comparisons(self) -> list[ComparisonRow]:
        """Every comparison row of every stage (pair, output, figures such as max_abs_diff, passed)."""
        return [row for s in self.stages for row in s.comparisons]

    @property
    def worst(self) -> dict[str, float]:
        """The largest max|diff| of each compared pair, e.g. {"tf_vs_torch": 2.4e-07}."""
        return worst_by_pair(self.report["stages"])

    @property
    def localization(self) -> dict[str, Any] | None:
        """Where outputs diverge, per pair (report.json's `localization`), when it ran."""
        return self.report.get("localization")

    @property
    def artifacts(self) -> dict[str, Path]:
        """The files this run left, by name: "model.py", "model.safetensors", "report.html", ..."""
        return {name: self.out_dir / name for name in _ARTIFACT_FILES if (self.out_dir / name).exists()}

    def __str__(self) -> str:
        where = f" at {self.failed_stage.name}: {self.failed_stage.error}" if self.failed_stage else ""
        return f"{self.model}: {self.status.upper()}{where} ({self.out_dir})"


def read_result(run_dir: PathLike) -> ConversionResult:
    """The result of an earlier `convert` or `verify` run, from its directory's report.json."""
    path = Path(run_dir) / artifacts.REPORT_JSON
    try:
        return ConversionResult.from_report(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError) as exc:
        raise UsageError(f"{path} is not the report of a `tf2torch convert` run: {exc}") from None


@dataclass(frozen=True)
class Job:
    """One model ready to run: the resolved config, the detected format, the output directory."""

    cfg: ModelConfig
    fmt: str
    out: Path
    verify: bool = False


ConfigSource = PathLike | Mapping[str, Any] | None
StageCallback = Callable[[StageRecord], None]


def settings(
    config: ConfigSource = None, options: Mapping[str, Any] | None = None, source: str = "arguments"
):
    """The resolved config: defaults < `config` (a YAML file, or a mapping of keys) < `options`."""
    overrides = {k: v for k, v in (options or {}).items() if v is not None}
    if isinstance(config, Mapping):
        return load_config(None, overrides, before_file=(("config argument", dict(config)),), source=source)
    return load_config(Path(config) if config is not None else None, overrides, source=source)


def job(cfg: ModelConfig, out: PathLike | None = None, *, verify: bool = False) -> Job:
    """A Job for a resolved config; the default `out` is runs/<model name> (runs/<name>-verify)."""
    if not cfg.model:
        raise UsageError("no model given: pass a model file, a SavedModel directory or a zoo id")
    fmt = detect_format(cfg.model, cfg.format)
    default = Path("runs") / (f"{slug(cfg.model)}-verify" if verify else slug(cfg.model))
    return Job(cfg, fmt, Path(out) if out is not None else default, verify)


def run(
    job: Job, *, pool: WorkerPool | None = None, progress: StageCallback | None = None
) -> ConversionResult:
    """Run a Job's stages in worker processes (`pool`'s, kept warm, or fresh ones) and write its report."""
    report_stage = (lambda record: progress(StageRecord.from_json(record))) if progress else None
    work = runner.verify if job.verify else runner.convert
    try:
        report = work(job.cfg, job.fmt, job.out, progress=report_stage, pool=pool)
    except OSError as exc:
        if exc.errno not in CANNOT_WRITE_ERRNOS:
            raise  # not the output directory's fault: a bug, with its traceback
        raise UsageError(
            f"cannot write to {job.out}: {exc.strerror or exc}; nothing was published there (an earlier "
            "run in it is untouched): free space, fix the permissions or choose another --out (`out=` in Python)"
        ) from exc
    return ConversionResult.from_report(report)


def convert(
    model: PathLike | None = None,
    *,
    config: ConfigSource = None,
    out: PathLike | None = None,
    pool: WorkerPool | None = None,
    progress: StageCallback | None = None,
    **options: Any,
) -> ConversionResult:
    """Convert one model: a .keras/.h5/.pb/.tflite file, a SavedModel directory or a zoo id (e.g.
    "demo.cnn"); `model` may instead come from `config`. `options` are config keys
    (docs/reference/config.md), e.g. `opset=18, gradients=True, tolerances={...}`; they override the
    config file. `progress` is called with each stage's record as soon as it is judged."""
    cfg = settings(config, {"model": str(model) if model is not None else None, **options})
    return run(job(cfg, out), pool=pool, progress=progress)


def verify(
    model: PathLike | None = None,
    torch_module: str | None = None,
    *,
    init_args: Mapping[str, Any] | None = None,
    config: ConfigSource = None,
    out: PathLike | None = None,
    save_weights: PathLike | None = None,
    pool: WorkerPool | None = None,
    progress: StageCallback | None = None,
    **options: Any,
) -> ConversionResult:
    """Check a hand-written port, "path/to/module.py:ClassName", against the TF model: the Keras
    weights are transferred into it and its outputs compared (the report's `port` has the mapping
    table and the mistakes found)."""
    given = {
        "model": str(model) if model is not None else None,
        "torch_module": torch_module,
        "init_args": dict(init_args) if init_args is not None else None,
        "save_weights": str(Path(save_weights).resolve()) if save_weights is not None else None,
        **options,
    }
    return run(verify_job(settings(config, given), out), pool=pool, progress=progress)


def verify_job(cfg: ModelConfig, out: PathLike | None = None) -> Job:
    """A verify Job: the port's file must exist; its path is made absolute for the worker."""
    from pipeline.torch_worker.port.user_module import parse_target  # plain Python, no torch

    if not cfg.torch_module:
        raise UsageError(
            "verify needs the port: --torch path/to/module.py:ClassName (torch_module in the config, or "
            "the torch_module argument)"
        )
    path, _ = parse_target(cfg.torch_module)
    if not path.is_file():
        raise UsageError(f"torch module file not found: {path}")
    target = f"{path.resolve()}:{cfg.torch_module.rpartition(':')[2]}"
    return job(cfg.model_copy(update={"torch_module": target}), out, verify=True)


def localize(run_dir: PathLike, *, pool: WorkerPool | None = None) -> ConversionResult:
    """Name the op where outputs diverge, on the artifacts of an earlier `convert` run (its
    report.json and model.onnx as they are now); the result's `localization` has it, and the run's
    reports are rewritten with it."""
    from pipeline.orchestrator.lock import run_lock
    from pipeline.reports import html as report_html
    from pipeline.reports import markdown as report_md

    run_dir = Path(run_dir)
    previous = read_result(run_dir)
    try:
        cfg = ModelConfig.model_validate({**previous.report["config"], "localize": "always"})
    except (ValueError, KeyError) as exc:
        raise UsageError(f"{run_dir / artifacts.REPORT_JSON} holds no usable config: {exc}") from None
    report = dict(previous.report)
    with run_lock(run_dir, "tf2torch command"), workers(pool) as held:
        report["localization"] = runner.localize(cfg, previous.format, run_dir, previous.stages, held)
        artifacts.save_json(run_dir / artifacts.REPORT_JSON, report)
        artifacts.save_text(run_dir / artifacts.REPORT_MD, report_md.markdown(report))
        report_html.write(run_dir, report)
    return ConversionResult.from_report(report)


def workers(pool: WorkerPool | None):
    """The caller's pool, left open, or a fresh one closed when done."""
    return contextlib.nullcontext(pool) if pool is not None else WorkerPool()


@dataclass(frozen=True)
class BatchRow:
    """One model of a batch (a row of summary.json)."""

    id: str
    model: str | None
    status: Status
    stage: str | None  # where it failed
    message: str | None
    seconds: float
    cached: bool
    worst: dict[str, float]  # the largest max|diff| per pair
    out_dir: Path | None

    @classmethod
    def from_json(cls, row: Mapping[str, Any]) -> BatchRow:
        """A row of summary.json's `models`."""
        return cls(
            row["id"],
            row["model"],
            Status(row["status"]),
            row["stage"],
            row["message"],
            row["seconds"],
            row["cached"],
            dict(row["worst"]),
            Path(row["out_dir"]) if row["out_dir"] else None,
        )

    def result(self) -> ConversionResult:
        """This model's full result, read from its report.json."""
        if self.out_dir is None:
            raise UsageError(f"{self.id} did not run ({self.status}): it has no report")
        return read_result(self.out_dir)


@dataclass(frozen=True)
class BatchResult:
    """A batch's outcome: summary.json's content, typed, and where the summary files are."""

    zoo: str
    out_dir: Path
    exit_code: int  # what `tf2torch batch` exits with: 0 all passed, 1 a failure or regression
    totals: dict[str, int]
    models: list[BatchRow]
    regressions: list[dict[str, str]]  # {"id", "reason"}, when a baseline was given
    summary: dict[str, Any] = field(repr=False)

    @property
    def passed(self) -> bool:
        """Every model passed (or was skipped on purpose) and nothing regressed."""
        return self.exit_code == 0

    def row(self, model_id: str) -> BatchRow:
        """The row of the zoo entry `model_id` (KeyError if the zoo has none)."""
        for row in self.models:
            if row.id == model_id:
                return row
        raise KeyError(f"no model '{model_id}' in this batch")

    @property
    def files(self) -> dict[str, Path]:
        """summary.html, summary.md, summary.json and junit.xml, where they were written."""
        from pipeline.batching import summary as batch_summary

        names = (batch_summary.SUMMARY_HTML, batch_summary.SUMMARY_MD, batch_summary.SUMMARY_JSON)
        return {name: self.out_dir / name for name in (*names, batch_summary.JUNIT_XML)}


class _Quiet:
    """A batch progress reporter that prints nothing."""

    def begin(self, total, already):
        pass

    def started(self, entry_id):
        pass

    def finished(self, row):
        pass

    def end(self, summary):
        pass


def batch(
    zoo: PathLike,
    *,
    out: PathLike | None = None,
    workers: int | None = None,
    executor: str = "local",
    ray_address: str | None = None,
    force: bool = False,
    baseline: PathLike | None = None,
    history: PathLike | None = None,
    max_rss_mb: float | None = None,
    prune: bool = False,
    progress: bool | Any = True,
    pool: WorkerPool | None = None,
    retries: int = 2,
    max_memory: str | float | None = None,
) -> BatchResult:
    """Convert every model of a zoo file (configs/zoos/*.yaml), reusing cached results; write
    summary.json/.md/.html and junit.xml into `out` (default runs/<zoo name>). `baseline`: an
    earlier summary.json to find regressions against; `history`: a folder of earlier runs (one
    summary.json each) for the dashboard's trend. `workers`: models
    converted at once (default: the number of cores). `progress`: True prints
    a line per model, False nothing (or a reporter object such as pipeline.batching.progress's).
    `retries`: reruns of a model whose worker process (or, on Ray, whose node) was lost. `max_memory`:
    the local slots' memory budget, MB or a size such as "16G" (default: the available memory)."""
    from pipeline.batching import memory, remote_out
    from pipeline.batching.progress import make_progress
    from pipeline.batching.run import BatchOptions, run_batch

    if ray_address and executor != "ray":
        raise UsageError("ray_address (--ray-address) needs the ray executor")
    if executor not in ("local", "ray"):
        raise UsageError(f"executor must be 'local' or 'ray', got '{executor}'")
    if not isinstance(retries, int) or retries < 0:
        raise UsageError(f"retries must be a whole number of at least 0, got {retries!r}")
    if max_memory is not None and executor == "ray":
        raise UsageError(
            "max_memory (--max-memory) is the local executor's budget; a Ray node offers the memory "
            "`ray start --memory` gives it"
        )
    max_memory_mb = memory.parse_mb(max_memory) if max_memory is not None else None
    workers = workers if workers is not None else os.cpu_count() or 1
    if not isinstance(workers, int) or workers < 1:
        raise UsageError(f"workers must be a whole number of at least 1, got {workers!r}")
    zoo = Path(zoo)
    out_url = str(out) if remote_out.is_url(str(out) if out is not None else "") else None
    if out_url is not None:
        out = remote_out.staging_dir(out_url.rstrip("/"))
    reporter = make_progress() if progress is True else _Quiet() if progress is False else progress
    options = BatchOptions(
        zoo=zoo,
        out=Path(out) if out is not None else Path("runs") / zoo.stem,
        workers=workers,
        executor=executor,
        ray_address=ray_address,
        force=force,
        baseline=Path(baseline) if baseline is not None else None,
        history=Path(history) if history is not None else None,
        max_rss_mb=max_rss_mb,
        prune=prune,
        progress=reporter,
        pool=pool,
        retries=retries,
        max_memory_mb=max_memory_mb,
        out_url=out_url,
    )
    summary, code = run_batch(options)
    return BatchResult(
        zoo=summary["zoo"],
        out_dir=options.out,  # for an --out URL, its local staging directory (summary["out_dir"]: the URL)
        exit_code=code,
        totals=dict(summary["totals"]),
        models=[BatchRow.from_json(r) for r in summary["models"]],
        regressions=list(summary["regressions"]),
        summary=summary,
    )


def slug(model: str) -> str:
    """A directory name for a model path or zoo id."""
    name = Path(model.rstrip("/")).name
    stem = name.rsplit(".", 1)[0] if Path(model).is_file() else name
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem) or "model"
