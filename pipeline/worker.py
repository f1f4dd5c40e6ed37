"""Child entry point: `python -m pipeline.worker GROUP` serves jobs for one framework group.

TensorFlow and torch cannot share a process (importing torch after TensorFlow segfaults), so the
runner keeps one worker per group. A worker reads job file paths from stdin, one per line, and runs
each job's stages, so that a batch pays the framework import once per worker, not once per model.
It reports each stage as one JSON line on stdout, prefixed with EVENT_PREFIX, and ends each job with
a `job_end` event carrying the job's peak memory. While a job runs, the worker's stderr (where
TensorFlow's C++ code logs) goes to that job's log file; the runner sends any other stdout text there.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import os
import sys
import time
import traceback
from pathlib import Path

from pipeline import plan

EVENT_PREFIX = "@@tf2torch-event "


def emit(**event) -> None:
    sys.stdout.write(EVENT_PREFIX + json.dumps(event, default=str) + "\n")
    sys.stdout.flush()


# Imported as soon as a worker starts, before its first job arrives: the pool starts both workers at
# once, so torch's imports (about 5 s) overlap TensorFlow's work instead of following it.
PRELOAD = {"tf": ("tensorflow", "tf2onnx"), "torch": ("torch", "onnx2torch", "onnxruntime")}

# Settings TensorFlow reads once per process, before its first use: a worker's name carries them
# after its group (`tf+keras2+no-onednn`), and models that need one get a worker of their own.
# keras2: `tf.keras` is tf_keras (legacy .h5, Keras 2 libraries); no-onednn: TF's own CPU kernels.
WORKER_SETTINGS = {"keras2": ("TF_USE_LEGACY_KERAS", "1"), "no-onednn": ("TF_ENABLE_ONEDNN_OPTS", "0")}


def worker_name(group: str, settings: list[str]) -> str:
    return "+".join([group, *settings])


def main(argv: list[str]) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    group, *settings = (argv[0] if argv else "").split("+")
    for setting in settings:
        variable, value = WORKER_SETTINGS[setting]
        os.environ[variable] = value
    for name in PRELOAD.get(group, ()):
        with contextlib.suppress(Exception):  # a broken install is reported by the job that needs it
            importlib.import_module(name)
    for line in sys.stdin:
        job_path = line.strip()
        if not job_path:
            continue
        job = json.loads(Path(job_path).read_text())
        _reset_peak_memory()
        with _stderr_to(job["log_path"]), _profiled(job):
            stage_peak = run_job(job)
            _forget_models()
        # Each stage resets the high-water mark for its own figure: the job's is the largest of them.
        peaks = [p for p in (stage_peak, _memory_mb("VmHWM")) if p is not None]
        emit(event="job_end", peak_rss_mb=max(peaks, default=None), rss_mb=_memory_mb("VmRSS"))
    return 0


def run_job(job: dict) -> float | None:
    """Run the job's stages; the largest peak memory (MB) of a stage."""
    from pipeline.config import ModelConfig
    from pipeline.errors import CANNOT_WRITE_ERRNOS, ConfigError, PipelineError, first_line

    cfg = ModelConfig.model_validate(job["config"])
    out = Path(job["out_dir"])
    state: dict = {}
    peaks: list[float] = []

    def memory() -> dict[str, float | None]:
        # what the stage added on top of what the worker held when it began (report: memory_mb)
        peak = _memory_mb("VmHWM")
        if peak is not None:
            peaks.append(peak)
        return {"start_rss": start_rss, "peak_rss": peak}

    for stage in job["stages"]:
        emit(stage=stage, event="start")
        start_rss = _memory_mb("VmRSS")
        _reset_peak_memory()
        started = time.perf_counter()
        try:
            # Imported on demand: the torch worker never imports a TensorFlow module, nor the reverse.
            module_name, func_name = plan.STAGES[stage].entry.split(":")
            func = getattr(importlib.import_module(module_name), func_name)
            details = func(cfg, job["format"], out, state)
        except PipelineError as exc:
            emit(
                stage=stage,
                event="error",
                seconds=time.perf_counter() - started,
                error=exc.message,
                exit_code=exc.exit_code,
                details=exc.details if exc.details is not None else getattr(exc, "ops", None),
                # A config that contradicts the model: the run is refused, not reported (runner.py).
                config_error=isinstance(exc, ConfigError),
                memory_mb=memory(),
            )
            return max(peaks, default=None)
        except Exception as exc:
            if isinstance(exc, OSError) and exc.errno in CANNOT_WRITE_ERRNOS:
                # A full disk or a read-only file system: the user's to fix, as a bad --out is.
                emit(
                    stage=stage,
                    event="error",
                    seconds=time.perf_counter() - started,
                    error=f"cannot write {exc.filename or 'the run directory'}: {exc.strerror} "
                    "(free space or choose another --out)",
                    exit_code=2,
                    details=None,
                    memory_mb=memory(),
                )
                return max(peaks, default=None)
            # A library failed on a valid model: report it in one line, keep the traceback in the log.
            traceback.print_exc()
            emit(
                stage=stage,
                event="error",
                seconds=time.perf_counter() - started,
                error=f"{type(exc).__name__}: {first_line(exc)}",
                exit_code=3,
                details=None,
                traceback=True,
                memory_mb=memory(),
            )
            return max(peaks, default=None)
        emit(
            stage=stage,
            event="done",
            seconds=time.perf_counter() - started,
            details=details,
            memory_mb=memory(),
        )
    return max(peaks, default=None)


@contextlib.contextmanager
def _profiled(job: dict):
    """With TF2TORCH_PROFILE=DIR, each job runs under pyinstrument and its call tree goes to
    DIR/<stages>-<pid>-<time>.txt (scripts/bench/profile.sh; pyinstrument is a dev dependency)."""
    target = os.environ.get("TF2TORCH_PROFILE")
    if not target:
        yield
        return
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.005)
    profiler.start()
    try:
        yield
    finally:
        profiler.stop()
        name = f"{'+'.join(job['stages'])}-{os.getpid()}-{time.time_ns()}.txt"
        Path(target).mkdir(parents=True, exist_ok=True)
        (Path(target) / name).write_text(profiler.output_text(unicode=False, color=False, show_all=False))


@contextlib.contextmanager
def _stderr_to(path: str):
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "a") as log:
        os.dup2(log.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _forget_models() -> None:
    """Free the last job's models so that the next job starts from the same state and memory."""
    if "keras" in sys.modules:  # never import a framework the job did not need
        sys.modules["keras"].backend.clear_session(free_memory=True)
    gc.collect()


def _reset_peak_memory() -> None:
    # Linux: writing 5 resets VmHWM, so each job reports its own peak.
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _memory_mb(field: str) -> float | None:
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith(field + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    return None


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
