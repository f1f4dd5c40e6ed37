"""Child entry point: `python -m pipeline.worker JOB.json` runs the stages of one framework group.

TensorFlow and torch cannot share a process (importing torch after TensorFlow segfaults), so the
runner starts one worker per group. The worker reports each stage as one JSON line on stdout,
prefixed with EVENT_PREFIX; everything else the frameworks print goes to the log.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback
from pathlib import Path

EVENT_PREFIX = "@@tf2torch-event "

# Stage name -> "module:function". Modules are imported on demand so that the torch worker never
# imports a TensorFlow module and vice versa.
STAGE_FUNCTIONS = {
    "load": "pipeline.stages.tf_stages:load",
    "export": "pipeline.stages.tf_stages:export",
    "validate": "pipeline.stages.torch_stages:validate",
    "import": "pipeline.stages.torch_stages:import_torch",
}


def emit(**event) -> None:
    sys.stdout.write(EVENT_PREFIX + json.dumps(event, default=str) + "\n")
    sys.stdout.flush()


def main(argv: list[str]) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from pipeline.config import ModelConfig
    from pipeline.errors import PipelineError, first_line

    job = json.loads(Path(argv[0]).read_text())
    cfg = ModelConfig.model_validate(job["config"])
    out = Path(job["out_dir"])
    state: dict = {}
    for stage in job["stages"]:
        emit(stage=stage, event="start")
        started = time.perf_counter()
        try:
            module_name, func_name = STAGE_FUNCTIONS[stage].split(":")
            func = getattr(importlib.import_module(module_name), func_name)
            details = func(cfg, job["format"], out, state)
        except PipelineError as exc:
            emit(
                stage=stage,
                event="error",
                seconds=time.perf_counter() - started,
                error=exc.message,
                exit_code=exc.exit_code,
                details=getattr(exc, "ops", None),
            )
            return 0
        except Exception as exc:
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
            )
            return 0
        emit(stage=stage, event="done", seconds=time.perf_counter() - started, details=details)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
