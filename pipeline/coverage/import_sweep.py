"""Import-stage sweep: ONNX's backend node tests through the project's import path.

Each test that applies at an opset (see node_tests) is imported with the same function the import
stage uses (`to_torch`: the project's converters, graph fixes and opset rewrites), run in torch on the
test's inputs, and compared with the expected outputs at the test's own tolerance. Outcomes:
- passed;
- refused: a converter declined with a reason (`NotConvertible`), such as an attribute mode no TF
  graph produces; the conversion of a model with that node fails at import naming the op and reason;
- failed: anything else (no converter, a converter error, a crash while running, wrong outputs).

    python -m pipeline.coverage.import_sweep [--opsets 17 18] [--json results.json] [-k NAME]

prints one line per opset: `import sweep, opset 17: N passed, M failed, R refused (...)`.
Runs in a torch process (never import TensorFlow here).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
import warnings
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pipeline.coverage.node_tests import NodeTest, compare, tests_at

DEFAULT_OPSETS = (17, 18)
TARGET_SHARE = 0.97  # of the applicable tests that must pass at each opset (issue 17)


@dataclass
class Outcome:
    name: str
    opset: int
    op_types: tuple[str, ...]
    status: str  # passed | failed | refused | not_applicable
    detail: str = ""


def run_test(test: NodeTest) -> Outcome:
    def outcome(status: str, detail: str = "") -> Outcome:
        return Outcome(test.name, test.opset, test.op_types, status, detail)

    if test.not_applicable:
        return outcome("not_applicable", test.not_applicable)
    status, detail, results = convert_and_run(test.model, list(test.inputs.values()))
    if status != "ran":
        return outcome(status, detail)
    mismatch = compare(test, results)
    return outcome("failed", f"outputs: {mismatch}") if mismatch else outcome("passed")


def convert_and_run(model, inputs: list) -> tuple[str, str, list]:
    """The model through the import stage's `to_torch`, run in torch on `inputs` (numpy arrays, or
    lists for sequence inputs). Returns (status, detail, outputs as numpy): status "ran", "refused"
    (a converter's deliberate NotConvertible) or "failed"."""
    import torch

    from pipeline.errors import UnsupportedOpsError
    from pipeline.torch_worker.converters.refusal import NotConvertible
    from pipeline.torch_worker.onnx_stages import to_torch

    try:
        module = to_torch(model)
    except NotConvertible as exc:
        return "refused", str(exc), []
    except UnsupportedOpsError as exc:
        # the import stage names every declined node; a converter's deliberate refusal stays one
        return ("refused" if isinstance(exc.__context__, NotConvertible) else "failed"), f"import: {exc}", []
    except Exception as exc:
        return "failed", f"import: {_describe(exc)}", []
    # np.asarray keeps a 0-d input 0-d (np.ascontiguousarray makes it 1-d)
    args = [_to_torch(value) for value in inputs]
    try:
        # fx prints the generated code of a failing traced module to stderr; the outcome says enough
        with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            result = module(*args)
    except NotConvertible as exc:
        return "refused", str(exc), []
    except Exception as exc:
        return "failed", f"run: {_describe(exc)}", []
    single = len(model.graph.output) == 1  # then a list is one sequence output, not several outputs
    results = [result] if single or not isinstance(result, (tuple, list)) else list(result)
    return "ran", "", [_to_numpy(r) for r in results]


def _to_torch(value):
    import torch

    if isinstance(value, list):  # a sequence input
        return [_to_torch(v) for v in value]
    return torch.from_numpy(np.array(value, order="C"))  # a writable copy; 0-d stays 0-d


def _to_numpy(value):
    if isinstance(value, (list, tuple)):
        return [_to_numpy(v) for v in value]
    return value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)


def _describe(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]


def sweep(opsets=DEFAULT_OPSETS, name_filter: str | None = None, progress=None) -> list[Outcome]:
    import onnxruntime

    onnxruntime.set_default_logger_severity(4)  # the applicability check's refusals are recorded, not logged
    outcomes = []
    for opset in opsets:
        tests = [t for t in tests_at(opset) if not name_filter or name_filter in t.name]
        for index, test in enumerate(tests):
            outcomes.append(run_test(test))
            if progress:
                progress(opset, index + 1, len(tests))
    return outcomes


def markdown_rows(outcomes: list[Outcome]) -> list[str]:
    """One row per test that failed or was refused: `| test | opsets | outcome | reason |`."""
    rows: dict[tuple[str, str], list[int]] = {}
    details: dict[tuple[str, str], str] = {}
    for o in outcomes:
        if o.status in ("failed", "refused"):
            key = (o.name, o.status)
            rows.setdefault(key, []).append(o.opset)
            details[key] = o.detail.replace("|", "/")
    return [
        f"| `{name}` | {', '.join(map(str, opsets))} | {status} | {details[(name, status)][:160]} |"
        for (name, status), opsets in rows.items()
    ]


def share_passed(outcomes: list[Outcome], opset: int) -> float:
    counts = Counter(o.status for o in outcomes if o.opset == opset)
    applicable = counts["passed"] + counts["failed"] + counts["refused"]
    return counts["passed"] / applicable if applicable else 0.0


def summary_line(outcomes: list[Outcome], opset: int) -> str:
    counts = Counter(o.status for o in outcomes if o.opset == opset)
    applicable = counts["passed"] + counts["failed"] + counts["refused"]
    share = 100 * share_passed(outcomes, opset)
    return (
        f"import sweep, opset {opset}: {counts['passed']} passed, {counts['failed']} failed, "
        f"{counts['refused']} refused ({share:.1f}% of {applicable} applicable tests; "
        f"{counts['not_applicable']} not applicable at this opset)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--opsets", type=int, nargs="+", default=list(DEFAULT_OPSETS))
    parser.add_argument("--json", type=Path, help="write every outcome to this file")
    parser.add_argument("-k", dest="name_filter", help="only tests whose name contains this")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every failure")
    parser.add_argument(
        "--markdown",
        action="store_true",
        help="print the failures and refusals as the table rows of docs/coverage.md",
    )
    args = parser.parse_args(argv)
    started = time.monotonic()

    def progress(opset, done, total):
        if sys.stderr.isatty():
            print(f"\ropset {opset}: {done}/{total}", end="", file=sys.stderr, flush=True)

    outcomes = sweep(args.opsets, args.name_filter, progress)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    if args.verbose:
        for o in outcomes:
            if o.status in ("failed", "refused"):
                print(f"{o.status:8} opset {o.opset} {o.name}: {o.detail}")
    if args.markdown:
        print("\n".join(markdown_rows(outcomes)))
    if args.json:
        args.json.write_text(json.dumps([asdict(o) for o in outcomes], indent=1) + "\n")
    for opset in args.opsets:
        print(summary_line(outcomes, opset))
    print(f"({time.monotonic() - started:.0f} s)")
    below = [opset for opset in args.opsets if share_passed(outcomes, opset) < TARGET_SHARE]
    if below and not args.name_filter:
        print(f"below the {TARGET_SHARE:.0%} target at opset(s) {below}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
