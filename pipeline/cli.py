"""Command line: `tf2torch convert [MODEL] [--config FILE] [--out DIR] [--opset N]`,
`tf2torch verify MODEL --torch FILE.py:CLASS [--init-args JSON] [--save-weights FILE]` and
`tf2torch batch ZOO [--workers N] [--out DIR] [--executor local|ray] [--force] [--baseline FILE]`.

A PipelineError (bad usage, config or model file) is printed as one message with its exit code;
only --debug shows a traceback. Exit codes: 0 pass, 1 tolerance failed, 2 bad usage/config/model
file, 3 a stage could not convert.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import traceback
from pathlib import Path

from pipeline import __version__, api
from pipeline.errors import (
    EXIT_CONVERSION,
    EXIT_PASS,
    EXIT_TOLERANCE,
    EXIT_USAGE,
    PipelineError,
    UsageError,
)
from pipeline.orchestrator.pool import WorkerPool
from pipeline.records import StageRecord
from pipeline.reports import markdown as report
from pipeline.tf_worker.builtin_models import DEMO_MODELS


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
        "--config",
        type=Path,
        help="YAML config with this model's settings (docs/reference/config.md: every key and its default)",
    )
    convert.add_argument("--out", type=Path, help="output directory (default: runs/<model name>)")
    convert.add_argument("--opset", type=int, help="ONNX opset for the export (default from config: 17)")
    convert.add_argument(
        "--gradients",
        action="store_const",
        const=True,
        help="also compare TF's and torch's gradients with respect to the inputs (config: gradients)",
    )
    convert.add_argument(
        "--layout",
        choices=("nhwc", "nchw"),
        help="nchw: image inputs and outputs in PyTorch's channel order (config: layout; default nhwc)",
    )
    convert.add_argument(
        "--train-check",
        dest="train_check",
        action="store_const",
        const=True,
        help="run 20 SGD steps of the native model and check the loss falls and every parameter "
        "gets a gradient (config: train_check)",
    )
    convert.add_argument(
        "--training",
        action="store_const",
        const=True,
        help="write train.py beside model.py from the Keras model's compile() settings (config: training)",
    )
    convert.add_argument(
        "--training-check",
        dest="training_check",
        type=_positive_int,
        nargs="?",
        const=3,
        metavar="N",
        help="run N optimizer steps (default 3) in TF and with train.py from the same weights on the same "
        "batches and compare losses and weight updates; implies --training (config: training_check)",
    )
    convert.add_argument(
        "--training-precision",
        dest="training_precision",
        choices=("float64", "float32"),
        help="the arithmetic of both sides of the training check (default float64, where rounding cannot "
        "fake or hide a difference; float32 is the model's own) (config: training_precision)",
    )
    convert.add_argument(
        "--training-allow-todos",
        dest="training_allow_todos",
        action="store_const",
        const=True,
        help="accept a train.py with TODOs (Keras settings it does not carry over); without it, a training "
        "stage with TODOs fails with exit 1 (config: training_allow_todos)",
    )
    convert.add_argument(
        "--compile",
        dest="torch_compile",
        action="store_const",
        const=True,
        help="also torch.compile the native model and compare its outputs (config: torch_compile)",
    )
    where = convert.add_mutually_exclusive_group()
    where.add_argument(
        "--localize",
        dest="localize",
        action="store_const",
        const="always",
        help="name the op where outputs diverge even when every comparison passes",
    )
    where.add_argument(
        "--no-localize",
        dest="localize",
        action="store_const",
        const="never",
        help="do not localise a failing comparison (default: localise it, config key `localize`)",
    )
    _add_trust_model(convert)
    convert.add_argument("--debug", action="store_true", help="show tracebacks for errors")

    localize = commands.add_parser(
        "localize",
        help="name the op where outputs diverge, on the artifacts of an earlier convert run",
        description="Reads RUN_DIR/report.json (its resolved config) and RUN_DIR/model.onnx as they are "
        "now, compares every intermediate value of TF, onnxruntime and torch, and adds the result to the "
        "report. Exit codes: 0 no node diverges, 1 a diverging node was named, 2 bad usage, 3 it could "
        "not run.",
    )
    localize.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="output directory of `convert`")
    localize.add_argument("--debug", action="store_true", help="show tracebacks for errors")

    ops = commands.add_parser(
        "ops",
        help="which TF ops, layers and ONNX ops convert (the support matrix from the sweeps)",
        description="Prints the support matrix measured by the two sweeps (docs/coverage.md; "
        "docs/ops.md is the same as a page): each TF op, layer or mode of the export sweep and each ONNX "
        "op of the import sweep, with its status at opsets 17 and 18. QUERY filters by name "
        "(case-insensitive substring), e.g. `tf2torch ops fft` or `tf2torch ops Resize`.",
    )
    ops.add_argument(
        "query", nargs="?", default=None, metavar="QUERY", help="part of an op, layer or group name"
    )
    ops.add_argument("--json", action="store_true", help="print the matching rows as JSON")
    ops.add_argument("--debug", action="store_true", help="show tracebacks for errors")

    verify = commands.add_parser(
        "verify",
        help="check a hand-written PyTorch port against the TF model, transferring the weights",
        description="Builds the port, transfers the Keras weights into it (layers paired by kind and order, "
        "shapes checked), prints the mapping table and the mistakes found, and compares its outputs with "
        "TF's on seeded inputs. Exit codes: 0 outputs match, 1 outside tolerance, 2 bad usage or weights "
        "that do not fit the port (nothing is guessed), 3 a stage failed.",
    )
    verify.add_argument("model", metavar="MODEL", help="a .keras/.h5 file or a zoo id (e.g. demo.cnn)")
    verify.add_argument(
        "--torch",
        dest="torch_module",
        metavar="FILE.py:CLASS",
        help="the hand-written module (config: torch_module)",
    )
    verify.add_argument(
        "--init-args", metavar="JSON", help="keyword arguments for the class, e.g. '{\"hidden\": 64}'"
    )
    verify.add_argument("--config", type=Path, help="YAML config (tolerances, inputs, weight_mapping, ...)")
    verify.add_argument("--out", type=Path, help="output directory (default: runs/<model name>-verify)")
    verify.add_argument(
        "--save-weights", metavar="FILE", help="write the transferred weights (safetensors) for the port"
    )
    verify.add_argument(
        "--input-layout",
        choices=("nhwc", "nchw"),
        help="the port's image layout (config: input_layout; default nchw: 4-D inputs are transposed)",
    )
    _add_trust_model(verify)
    verify.add_argument("--debug", action="store_true", help="show tracebacks for errors")

    batch = commands.add_parser(
        "batch",
        help="convert every model of a zoo file, reusing unchanged results",
        description="Exit codes: 0 every model passed (disabled ones are skipped), 1 a model failed or "
        "regressed against --baseline, 2 bad usage (zoo file, baseline, output directory locked), "
        "130/143 interrupted (run again to resume).",
    )
    batch.add_argument("zoo", type=Path, metavar="ZOO", help="zoo file, e.g. configs/zoos/smoke.yaml")
    batch.add_argument(
        "--workers",
        type=_positive_int,
        default=os.cpu_count() or 1,
        help="models converted in parallel (default: the number of cores, %(default)s here)",
    )
    batch.add_argument(
        "--out",
        help="output directory (default: runs/<zoo file name>), or an fsspec URL such as s3://bucket/runs "
        "(the driver uploads each model's run directory and the summary)",
    )
    batch.add_argument("--executor", choices=("local", "ray"), default="local", help="where models run")
    batch.add_argument(
        "--ray-address", help="Ray cluster to join, e.g. ray://head:10001 (default: start a local Ray)"
    )
    batch.add_argument("--force", action="store_true", help="convert every model again, ignoring the cache")
    batch.add_argument(
        "--baseline", type=Path, help="an earlier run's summary.json: report models that regressed"
    )
    batch.add_argument(
        "--history",
        type=Path,
        metavar="DIR",
        help="earlier runs, one folder each with its summary.json (scripts/nightly.sh keeps them): "
        "summary.html shows each model's trend over them",
    )
    batch.add_argument(
        "--max-rss-mb",
        type=float,
        help="replace a worker process that holds more memory than this after a model (default: the "
        "zoo's max_rss_mb, else never)",
    )
    batch.add_argument(
        "--retries",
        type=_count,
        default=2,
        help="run a model again, up to this many times, when its worker process or its Ray node was "
        "lost (killed, crashed, node gone); then record it as failed with the reason (default 2)",
    )
    batch.add_argument(
        "--max-memory",
        metavar="SIZE",
        help="local executor: models run side by side only while their memory needs (the last run's "
        "peak, else an estimate) fit in SIZE, e.g. 16G; a model needing more is refused (default: the "
        "machine's available memory)",
    )
    batch.add_argument(
        "--prune",
        action="store_true",
        help="once a model passes, delete its model files (model.onnx, model.pt, model.safetensors, "
        "model.pt2, tf_weights.npz) and keep its reports; a failed model keeps everything",
    )
    batch.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    return parser


def _add_trust_model(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--trust-model",
        dest="trust_model",
        action="store_const",
        const=True,
        help="load Keras Lambda layers, whose Python code is stored in the model file and runs when it is "
        "loaded (config: trust_model); only for files you trust",
    )


def _whole_number(least: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"expected at least {least}, got {value}")
        return value

    return parse


_positive_int = _whole_number(1)
_count = _whole_number(0)


def _exit_on_sigterm(signum, frame):
    # Unwinding (rather than dying at once) lets the runner kill the worker process it started.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None, pool: WorkerPool | None = None) -> int:
    """The command line. `pool`: warm worker processes to run the stages in (a caller converting many
    models in one process keeps its workers); by default each command starts and ends its own."""
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        commands = {
            "batch": _batch,
            "convert": _convert,
            "localize": _localize,
            "ops": _ops,
            "verify": _verify,
        }
        return commands[args.command](args, pool)
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


def _convert(args: argparse.Namespace, pool: WorkerPool | None) -> int:
    options = {
        "model": args.model,
        "opset": args.opset,
        "localize": args.localize,
        "gradients": args.gradients,
        "train_check": args.train_check,
        "layout": args.layout,
        "torch_compile": args.torch_compile,
        "trust_model": args.trust_model,
        "training": args.training,
        "training_check": args.training_check,
        "training_precision": args.training_precision,
        "training_allow_todos": args.training_allow_todos,
    }
    cfg = api.settings(args.config, options, source="command line")
    if cfg.model is None:
        jobs = [
            api.job(cfg.model_copy(update={"model": m}), (args.out or Path("runs")) / m) for m in DEMO_MODELS
        ]
    else:
        jobs = [api.job(cfg, args.out)]  # all formats detected: a bad path fails before any work
    worst = 0
    with api.workers(pool) as workers:  # the demo models share their worker processes
        for job in jobs:
            print(f"{job.cfg.model} ({job.fmt}) -> {job.out}", flush=True)
            result = api.run(job, pool=workers, progress=_print_stage)
            print(report.verdict_line(result.report), flush=True)
            for line in report.localization_lines(result.report):
                print(line, flush=True)
            worst = max(worst, result.exit_code)
    return worst


def _print_stage(record: StageRecord) -> None:
    print(report.stage_line(record.to_json()), flush=True)


def _ops(args: argparse.Namespace, pool: WorkerPool | None) -> int:
    from pipeline.coverage import support_matrix

    matrix = support_matrix.load()
    if args.json:
        query = (args.query or "").lower()
        rows = {
            "tf_ops": [
                r for r in matrix["tf_ops"] if query in r["name"].lower() or query in r["group"].lower()
            ],
            "onnx_ops": [r for r in matrix["onnx_ops"] if query in r["op"].lower()],
        }
        print(json.dumps({"versions": matrix["versions"], **rows}, indent=1))
        return 0 if rows["tf_ops"] or rows["onnx_ops"] else 1
    text = support_matrix.lookup(matrix, args.query)
    print(text)
    return 1 if text.startswith("no TF or ONNX op matches") else 0


def _batch(args: argparse.Namespace, pool: WorkerPool | None) -> int:
    # A batch's executor starts the worker pools of its slots; a single local slot takes `pool`.
    if args.ray_address and args.executor != "ray":
        raise UsageError("--ray-address needs --executor ray")
    result = api.batch(
        args.zoo,
        out=args.out,
        workers=args.workers,
        executor=args.executor,
        ray_address=args.ray_address,
        force=args.force,
        baseline=args.baseline,
        history=args.history,
        max_rss_mb=args.max_rss_mb,
        prune=args.prune,
        pool=pool,
        retries=args.retries,
        max_memory=args.max_memory,
    )
    return result.exit_code


def _verify(args: argparse.Namespace, pool: WorkerPool | None) -> int:
    options = {
        "model": args.model,
        "torch_module": args.torch_module,
        "input_layout": args.input_layout,
        "trust_model": args.trust_model,
        "save_weights": str(Path(args.save_weights).resolve()) if args.save_weights else None,
    }
    if args.init_args is not None:
        try:
            options["init_args"] = json.loads(args.init_args)
        except ValueError as exc:
            raise UsageError(f"--init-args is not valid JSON: {exc}") from None
        if not isinstance(options["init_args"], dict):
            raise UsageError(
                "--init-args must be a JSON object of keyword arguments, e.g. '{\"hidden\": 64}'"
            )
    job = api.verify_job(api.settings(args.config, options, source="command line"), args.out)
    print(f"{job.cfg.model} ({job.fmt}) vs {job.cfg.torch_module} -> {job.out}", flush=True)
    with api.workers(pool) as workers:
        result = api.run(job, pool=workers, progress=_print_stage)
    for line in report.port_lines(result.report):
        print(line, flush=True)
    print(report.verdict_line(result.report), flush=True)
    return result.exit_code


def _localize(args: argparse.Namespace, pool: WorkerPool | None) -> int:
    earlier = api.read_result(args.run_dir)  # a directory without a report fails here, before any work
    print(f"{earlier.model} ({earlier.format}) -> {args.run_dir}: localising", flush=True)
    result = api.localize(args.run_dir, pool=pool)
    for line in report.localization_lines(result.report):
        print(line, flush=True)
    localization = result.localization or {}
    if localization.get("status") != "done":
        return EXIT_CONVERSION
    diverges = any(p.get("culprit") for p in localization["pairs"].values())
    return EXIT_TOLERANCE if diverges else EXIT_PASS
