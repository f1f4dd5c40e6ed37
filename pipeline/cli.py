"""Command line: `tf2torch convert [MODEL] [--config FILE] [--out DIR] [--opset N]`.

A PipelineError (bad usage, config or model file) is printed as one message with its exit code;
only --debug shows a traceback. Exit codes: 0 pass, 1 tolerance failed, 2 bad usage/config/model
file, 3 a stage could not convert.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import traceback
from pathlib import Path

from pipeline import __version__, report, runner
from pipeline.config import load_config
from pipeline.errors import EXIT_USAGE, PipelineError, UsageError
from pipeline.formats import detect_format
from pipeline.zoo import DEMO_MODELS


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse exits 2 too; keep its message but our prefix
        self.print_usage(sys.stderr)
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tf2torch", description="Convert TensorFlow models to PyTorch, verifying every stage."
    )
    parser.add_argument("--version", action="version", version=f"tf2torch {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    convert = commands.add_parser(
        "convert", help="convert one model (or, with no MODEL, the built-in demo models)"
    )
    convert.add_argument(
        "model",
        nargs="?",
        metavar="MODEL",
        help="a .keras/.h5/.pb/.tflite file, a SavedModel directory or a zoo id "
        f"(default: the demo models {', '.join(DEMO_MODELS)})",
    )
    convert.add_argument(
        "--config", type=Path, help="YAML config with this model's overrides of configs/defaults.yaml"
    )
    convert.add_argument("--out", type=Path, help="output directory (default: runs/<model name>)")
    convert.add_argument("--opset", type=int, help="ONNX opset for the export (default from config: 17)")
    convert.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    return parser


def _exit_on_sigterm(signum, frame):
    # Unwinding (rather than dying at once) lets the runner kill the worker process it started.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        return _convert(args)
    except PipelineError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`tf2torch convert | head`): stop quietly, as other command-line tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def _convert(args: argparse.Namespace) -> int:
    overrides = {k: v for k, v in (("model", args.model), ("opset", args.opset)) if v is not None}
    cfg = load_config(args.config, overrides)
    if cfg.model is None:
        jobs = [(cfg.model_copy(update={"model": m}), (args.out or Path("runs")) / m) for m in DEMO_MODELS]
    else:
        jobs = [(cfg, args.out or Path("runs") / _slug(cfg.model))]
    formats = [detect_format(c.model, c.format) for c, _ in jobs]  # fail on a bad path before any work
    worst = 0
    for (job_cfg, out), fmt in zip(jobs, formats, strict=True):
        print(f"{job_cfg.model} ({fmt}) -> {out}", flush=True)
        try:
            result = runner.convert(
                job_cfg, fmt, out, progress=lambda s: print(report.stage_line(s), flush=True)
            )
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise UsageError(f"cannot write to {out}: {exc.strerror or exc}") from None
        print(report.verdict_line(result), flush=True)
        worst = max(worst, result["exit_code"])
    return worst


def _slug(model: str) -> str:
    name = Path(model.rstrip("/")).name
    stem = name.rsplit(".", 1)[0] if Path(model).is_file() else name
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem) or "model"
