"""Export-stage sweep: one tiny TF function per op, layer or attribute mode (tf_cases.py) through the
pipeline's stages 2 to 4.

A TF process (tf_export.py) runs each case in TF and exports it with the export stage's own code at
each opset; this process (torch side) then validates each exported graph as the validate stage does
(onnx.checker full check, strict shape inference, onnxruntime against TF's outputs) and imports it as
the import stage does (`to_torch`, run, compared with TF's outputs), at the case's tolerance
(1e-4 unless the case says otherwise). Per stage and opset it prints

    export sweep, opset 17: export 330 passed, 21 failed; validate ...; import ... (of 351 cases)

A case's `known` reason marks a failure docs/coverage.md lists. The sweep exits 1 when a case fails that is
not known, or a known one passes (then its docs/coverage.md row and `known` go).

    python -m pipeline.coverage.export_sweep [--opsets 17 18] [-k NAME ...] [-v] [--json F] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pipeline.coverage.node_tests import array_mismatch

DEFAULT_OPSETS = (17, 18)
STAGES = ("export", "validate", "import")


@dataclass
class CaseOutcome:
    name: str
    group: str
    opset: int
    stage: str  # the last stage reached: export | validate | import
    status: str  # passed | failed | refused (import: a converter's deliberate NotConvertible)
    detail: str = ""
    known: str | None = None

    @property
    def unexpected(self) -> bool:
        return (self.status == "passed") == bool(self.known)


def export_in_tf(out: Path, opsets, name_filters: list[str] | None) -> dict:
    """Run the TF half in its own process (TensorFlow and torch cannot share one)."""
    command = [sys.executable, "-m", "pipeline.coverage.tf_export", str(out), "--opsets", *map(str, opsets)]
    for name in name_filters or []:
        command += ["-k", name]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the TF half of the export sweep failed:\n{done.stderr[-3000:]}")
    return json.loads((out / "cases.json").read_text())


def check_case(record: dict, opset: int, out: Path) -> CaseOutcome:
    opsets = record.get("known_opsets") or []
    known = record.get("known") if not opsets or opset in opsets else None

    def outcome(stage: str, status: str, detail: str = "") -> CaseOutcome:
        return CaseOutcome(record["name"], record["group"], opset, stage, status, detail, known)

    if "error" in record:
        return outcome("export", "failed", record["error"])
    export = record["exports"][str(opset)]
    if export["status"] != "passed":
        return outcome("export", "failed", export["detail"])
    folder = out / record["folder"]
    feeds = dict(np.load(folder / "inputs.npz"))
    expected = list(dict(np.load(folder / "tf_outputs.npz")).values())
    model_path = folder / f"opset{opset}.onnx"
    problem, model, onnx_outputs = _validate(model_path, feeds)
    if problem:
        return outcome("validate", "failed", problem)
    problem = _mismatch(onnx_outputs, expected, record)
    if problem:
        return outcome("validate", "failed", f"onnxruntime vs TF: {problem}")

    from pipeline.coverage.import_sweep import convert_and_run

    status, detail, results = convert_and_run(model, [feeds[i.name] for i in model.graph.input])
    if status != "ran":
        return outcome("import", status, detail)
    problem = _mismatch(results, expected, record)
    return outcome("import", "failed", f"torch vs TF: {problem}") if problem else outcome("import", "passed")


def _validate(path: Path, feeds: dict):
    """(problem, model, onnxruntime's outputs), checked as the validate stage checks model.onnx."""
    import onnx

    from pipeline.torch_worker.onnx_stages import onnxruntime_session

    model = onnx.load(str(path))
    try:
        onnx.checker.check_model(model, full_check=True)
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
        session = onnxruntime_session(str(path))
        outputs = session.run(None, {i.name: feeds[i.name] for i in session.get_inputs()})
    except Exception as exc:  # noqa: BLE001 - checker, shape inference or onnxruntime: the case's outcome
        lines = str(exc).strip().splitlines()
        return f"{type(exc).__name__}: {lines[0][:300] if lines else ''}", model, []
    return None, model, outputs


def _mismatch(got: list, expected: list, record: dict) -> str | None:
    if len(got) != len(expected):
        return f"{len(got)} outputs, expected {len(expected)}"
    for index, (a, b) in enumerate(zip(got, expected, strict=True)):
        problem = array_mismatch(np.asarray(a), np.asarray(b), record["rtol"], record["atol"])
        if problem:
            return f"output {index}: {problem}"
    return None


def sweep(
    opsets=DEFAULT_OPSETS, name_filters: list[str] | None = None, keep: Path | None = None
) -> tuple[list[CaseOutcome], dict]:
    """Every case's outcome per opset, and what of Keras no case covers (see tf_cases.uncovered)."""
    import onnxruntime

    onnxruntime.set_default_logger_severity(4)
    with tempfile.TemporaryDirectory(prefix="tf2torch-export-sweep-") as tmp:
        out = keep or Path(tmp)
        catalogue = export_in_tf(out, opsets, name_filters)
        outcomes = [check_case(record, opset, out) for opset in opsets for record in catalogue["cases"]]
        return outcomes, catalogue.get("uncovered", {})


def coverage_line(uncovered: dict) -> str:
    parts = []
    for kind in ("keras.ops", "keras.layers"):
        total, missing = uncovered.get(f"{kind} total", []), uncovered.get(kind, [])
        if total:
            parts.append(f"{len(total) - len(missing)} of {len(total)} {kind} names")
    return "catalogue covers " + " and ".join(parts) + " of the installed Keras (-v lists the rest)"


def stage_counts(outcomes: list[CaseOutcome], opset: int) -> dict[str, Counter]:
    """Per stage, how many cases passed it, failed (or were refused) in it; a case that stopped
    earlier is not counted in later stages."""
    order = {stage: i for i, stage in enumerate(STAGES)}
    counts = {stage: Counter() for stage in STAGES}
    for o in outcomes:
        if o.opset != opset:
            continue
        for stage in STAGES[: order[o.stage]]:
            counts[stage]["passed"] += 1
        counts[o.stage][o.status] += 1
    return counts


def summary_line(outcomes: list[CaseOutcome], opset: int) -> str:
    counts = stage_counts(outcomes, opset)
    total = sum(1 for o in outcomes if o.opset == opset)
    parts = []
    for stage in STAGES:
        c = counts[stage]
        refused = f", {c['refused']} refused" if c["refused"] else ""
        parts.append(f"{stage} {c['passed']} passed, {c['failed']} failed{refused}")
    return f"export sweep, opset {opset}: " + "; ".join(parts) + f" (of {total} cases)"


def markdown_rows(outcomes: list[CaseOutcome]) -> list[str]:
    """docs/coverage.md rows: each case that does not pass, its opsets, the stage and the reason."""
    by_case: dict[tuple, list[int]] = {}
    for o in outcomes:
        if o.status != "passed":
            by_case.setdefault((o.name, o.stage, o.status, o.known or o.detail), []).append(o.opset)
    rows = []
    for (name, stage, status, reason), opsets in sorted(by_case.items()):
        rows.append(f"| `{name}` | {', '.join(map(str, opsets))} | {stage}: {status} | {reason} |")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.coverage.export_sweep", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--opsets", type=int, nargs="+", default=list(DEFAULT_OPSETS))
    parser.add_argument(
        "-k", dest="name_filters", action="append", help="only cases whose name contains this (repeatable)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per case that does not pass")
    parser.add_argument("--json", type=Path, default=None, help="write every outcome to this file")
    parser.add_argument(
        "--markdown", action="store_true", help="print the docs/coverage.md rows of the cases that fail"
    )
    parser.add_argument("--keep", type=Path, default=None, help="keep the exported cases in this folder")
    args = parser.parse_args(argv)

    started = time.monotonic()
    outcomes, uncovered = sweep(args.opsets, args.name_filters, args.keep)
    if args.verbose:
        for o in outcomes:
            if o.status != "passed":
                flag = "known" if o.known else "NEW"
                print(f"  opset {o.opset} {o.stage} {o.status} ({flag}): {o.name}: {o.detail}")
    for opset in args.opsets:
        print(summary_line(outcomes, opset))
    if not args.name_filters:
        print(coverage_line(uncovered))
        if args.verbose:
            for kind in ("keras.ops", "keras.layers"):
                print(f"  {kind} without a case: {', '.join(uncovered.get(kind, []))}")
    unexpected = [o for o in outcomes if o.unexpected]
    for o in unexpected:
        if o.status == "passed":
            print(f"  now passes, but is listed as a known failure: {o.name} (opset {o.opset})")
        else:
            print(f"  fails, and is not a known failure: {o.name} (opset {o.opset}, {o.stage}): {o.detail}")
    if args.markdown:
        print("\n".join(markdown_rows(outcomes)))
    if args.json:
        args.json.write_text(json.dumps([asdict(o) for o in outcomes], indent=1))
    print(f"({time.monotonic() - started:.0f} s)")
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
