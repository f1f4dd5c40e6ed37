"""The tf2onnx-suite sweep: tf2onnx's own backend tests (tests/test_backend.py of the installed
tf2onnx's sdist), a list of cases this project did not choose, through three routes:

    onnxruntime  on tf2onnx's export        (what the test itself checks)
    importer     the import stage on tf2onnx's export
    chain        the project's export, validate and import stages

each compared with TF at the test's own tolerance (rtol, atol, mtol, shape and dtype checks). A TF
process (tf2onnx_suite_tf.py) runs the tests and both exports; this process validates and imports.

Every case onnxruntime passes must pass the chain, or be listed in docs/coverage.md's table of known
suite failures with its reason; the sweep exits 1 on a failure not listed there and on a listed case
that passes. A case the importer converts on tf2onnx's export but the chain loses is named apart: the
project's export must never lose one.

    python -m pipeline.coverage.tf2onnx_suite [--opsets 17 18] [--part K/N] [-k NAME] [-v] [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from pipeline.coverage.tf2onnx_suite_tf import parse_part

COVERAGE_PAGE = Path(__file__).resolve().parents[2] / "docs" / "coverage.md"
KNOWN_START, KNOWN_END = "<!-- tf2onnx-suite-known:start -->", "<!-- tf2onnx-suite-known:end -->"
DEFAULT_OPSETS = (17, 18)
CRASH_RESTARTS = 20  # the TF half is restarted past a crashing test at most this often


@dataclass
class SuiteCase:
    case: str
    test: str
    opset: int
    ops: list[str]
    upstream: str  # passed | mismatch | onnxruntime failed | export failed | tf failed
    importer: str = "not run"  # passed | failed | refused | not run (upstream made no model)
    chain: str = "not run"  # passed | export failed | validate failed | import failed | ...
    detail: str = ""  # why the chain (or, when upstream failed, upstream) did not pass
    importer_detail: str = ""
    known: str | None = None

    @property
    def counted(self) -> bool:
        """The denominator: cases whose own test passes on tf2onnx's export with onnxruntime."""
        return self.upstream == "passed"

    @property
    def lost_by_export(self) -> bool:
        return self.counted and self.importer == "passed" and self.chain != "passed"

    @property
    def unexpected(self) -> bool:
        return self.counted and (self.chain == "passed") == bool(self.known)


@dataclass
class TestRun:
    opset: int
    tests: int = 0
    skipped: Counter = field(default_factory=Counter)
    without_case: dict = field(default_factory=dict)  # test -> why it made no case
    crashed: dict = field(default_factory=dict)


# --- known failures (docs/coverage.md) ------------------------------------------------------------


def known_failures(page: Path = COVERAGE_PAGE) -> dict[str, tuple[set[int], str]]:
    """The table between the markers: | `case or test` | opsets | reason |. A test's name stands for
    all its cases; `test#2` for its second."""
    text = page.read_text()
    if KNOWN_START not in text:
        return {}
    body = text.split(KNOWN_START, 1)[1].split(KNOWN_END, 1)[0]
    known = {}
    for line in body.splitlines():
        match = re.match(r"\|\s*`([^`]+)`\s*\|\s*([\d, ]+)\s*\|\s*(.+?)\s*\|\s*$", line)
        if match:
            opsets = {int(x) for x in match.group(2).replace(" ", "").split(",") if x}
            known[match.group(1)] = (opsets, match.group(3))
    return known


def known_reason(case: str, test: str, opset: int, known: dict) -> str | None:
    for key in (case, test):
        if key in known and opset in known[key][0]:
            return known[key][1]
    return None


# --- the TF half, restarted past a crash ----------------------------------------------------------


def run_tf_half(out: Path, opset: int, part, name_filters) -> TestRun:
    after = None
    for _ in range(CRASH_RESTARTS + 1):
        command = [
            sys.executable,
            "-m",
            "pipeline.coverage.tf2onnx_suite_tf",
            str(out),
            "--opset",
            str(opset),
        ]
        if part:
            command += ["--part", f"{part[0]}/{part[1]}"]
        for name in name_filters or []:
            command += ["-k", name]
        if after:
            command += ["--after", after]
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        done = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        progress = [line for line in done.stderr.splitlines() if line.startswith("ran ")]
        if progress:
            print(f"  opset {opset}: {progress[-1]}", file=sys.stderr, flush=True)
        if done.returncode == 0:
            return read_test_run(out, opset)
        begun = _unfinished_test(out)
        if begun is None:
            raise RuntimeError(f"the TF half of the tf2onnx-suite sweep failed:\n{done.stderr[-3000:]}")
        with (out / "records.jsonl").open("a") as records:
            crash = f"the TF process died (exit {done.returncode}): {_last_line(done.stderr)}"
            records.write(json.dumps({"ended": {"test": begun, "crashed": crash}}) + "\n")
        after = begun
    raise RuntimeError(f"the TF half crashed more than {CRASH_RESTARTS} times")


def _unfinished_test(out: Path) -> str | None:
    begun = None
    for record in _records(out):
        if "begun" in record:
            begun = record["begun"]
        elif "ended" in record:
            begun = None
    return begun


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no message"


def _records(out: Path) -> list[dict]:
    path = out / "records.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line] if path.exists() else []


def read_test_run(out: Path, opset: int) -> TestRun:
    run = TestRun(opset)
    for record in _records(out):
        ended = record.get("ended")
        if not ended:
            continue
        run.tests += 1
        if "skipped" in ended:
            run.skipped[ended["skipped"]] += 1
        elif "crashed" in ended:
            run.crashed[ended["test"]] = ended["crashed"]
        elif ended.get("no_case"):
            run.without_case[ended["test"]] = ended.get("error", "")
    return run


# --- the torch half -------------------------------------------------------------------------------


def check_case(record: dict, opset: int, out: Path, known: dict) -> SuiteCase:
    outcome = SuiteCase(
        record["case"], record["test"], opset, record.get("ops", []), record["upstream"],
        detail=record.get("detail", ""),
    )  # fmt: skip
    outcome.known = known_reason(outcome.case, outcome.test, opset, known)
    folder = out / record["folder"]
    if not (folder / "case.pkl").exists():
        return outcome
    case = pickle.loads((folder / "case.pkl").read_bytes())
    if (folder / "upstream.onnx").exists():
        outcome.importer, outcome.importer_detail = _import_and_compare(folder / "upstream.onnx", case)
    export = record.get("project_export", {})
    if export.get("status") != "passed":
        outcome.chain, chain_detail = "export failed", export.get("detail", "")
    else:
        outcome.chain, chain_detail = _chain(folder / "project.onnx", case)
    if outcome.counted:
        outcome.detail = chain_detail
    return outcome


def _import_and_compare(path: Path, case: dict) -> tuple[str, str]:
    import onnx

    from pipeline.coverage.import_sweep import convert_and_run

    model = onnx.load(str(path))
    feeds = [case["feeds"][i.name] for i in _graph_inputs(model)]
    if any(np.asarray(f).dtype.kind in "OSU" for f in feeds):
        return "failed", "a string input: torch has no string tensors"
    try:
        status, detail, results = convert_and_run(model, feeds)
    except Exception as exc:  # noqa: BLE001 - whatever breaks is this case's outcome, not the sweep's
        return "failed", f"{type(exc).__name__}: {str(exc).strip()[:300]}"
    if status != "ran":
        return status, detail
    problem = suite_mismatch(_nhwc(results, case), case["expected"], case["tolerance"])
    return ("failed", f"torch vs TF: {problem}") if problem else ("passed", "")


def _chain(path: Path, case: dict) -> tuple[str, str]:
    """The project's export through the validate stage's checks and the import stage."""
    from pipeline.coverage.export_sweep import _validate

    problem, _, onnx_outputs = _validate(path, case["feeds"])
    if problem:
        return "validate failed", problem
    problem = suite_mismatch(_nhwc(onnx_outputs, case), case["expected"], case["tolerance"])
    if problem:
        return "validate failed", f"onnxruntime vs TF: {problem}"
    status, detail = _import_and_compare(path, case)
    return ("passed", "") if status == "passed" else (f"import {status}", detail)


def _graph_inputs(model):
    initializers = {t.name for t in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in initializers]


def _nhwc(outputs: list, case: dict) -> list:
    outputs = [np.asarray(o) for o in outputs]
    for i in case.get("nchw_outputs", []):
        outputs[i] = np.transpose(outputs[i], (0, 2, 3, 1))
    return outputs


def suite_mismatch(got: list, expected: list, tolerance: dict) -> str | None:
    """None when `got` passes the test's own comparison (tf2onnx's assert_results_equal: values within
    rtol/atol after clipping to +-mtol, strings equal once TF's padding is dropped, then dtype and
    shape, each check only when the test asks for it), else how it fails."""
    if len(got) < len(expected):
        return f"{len(got)} outputs, expected {len(expected)}"
    for index, (actual, want) in enumerate(zip(got, expected, strict=False)):
        actual, want = np.asarray(actual), np.asarray(want)
        problem = _value_mismatch(actual, want, tolerance) if tolerance["check_value"] else None
        if not problem and tolerance["check_dtype"] and actual.dtype != want.dtype:
            problem = f"dtype {actual.dtype}, expected {want.dtype}"
        if not problem and tolerance["check_shape"] and actual.shape != want.shape:
            problem = f"shape {list(actual.shape)}, expected {list(want.shape)}"
        if problem:
            return f"output {index}: {problem}"
    return None


def _value_mismatch(actual: np.ndarray, want: np.ndarray, tolerance: dict) -> str | None:
    if want.dtype == object or want.dtype.kind in "US":
        strip = np.vectorize(lambda x: x.replace(b"\x00", b"").decode() if isinstance(x, bytes) else x)
        try:
            same = np.array_equal(strip(want), strip(actual))
        except Exception:  # noqa: BLE001 - not comparable at all: a mismatch
            same = False
        return None if same else "strings differ"
    mtol = tolerance["mtol"]
    if mtol is not None:
        want, actual = np.clip(want, -mtol, mtol), np.clip(actual, -mtol, mtol)
    try:
        np.testing.assert_allclose(want, actual, rtol=tolerance["rtol"], atol=tolerance["atol"])
    except (AssertionError, TypeError, ValueError) as exc:
        if want.shape != actual.shape and not isinstance(exc, AssertionError):
            return f"shape {list(actual.shape)}, expected {list(want.shape)}"
        if want.shape == actual.shape and want.dtype.kind in "fciub" and actual.dtype.kind in "fciub":
            diff = np.abs(want.astype(np.float64) - actual.astype(np.float64))
            return f"max abs error {np.nanmax(diff) if diff.size else 0:.3g} (rtol {tolerance['rtol']}, atol {tolerance['atol']})"
        return "values differ"
    return None


# --- the sweep and its report ---------------------------------------------------------------------


def sweep(
    opsets, part=None, name_filters=None, keep: Path | None = None, reuse: bool = False
) -> tuple[list[SuiteCase], list[TestRun]]:
    import onnxruntime

    from pipeline.coverage.suite_source import suite_dir

    onnxruntime.set_default_logger_severity(4)
    suite_dir()  # download before the TF processes start: one clear error if the registry is away
    known = known_failures()
    cases, runs = [], []
    with tempfile.TemporaryDirectory(prefix="tf2torch-suite-sweep-") as tmp:
        for opset in opsets:
            out = (keep or Path(tmp)) / f"opset{opset}"
            if reuse and (out / "records.jsonl").exists():
                runs.append(read_test_run(out, opset))  # the kept cases of an earlier run
            else:
                runs.append(run_tf_half(out, opset, part, name_filters))
            records = [r for r in _records(out) if "case" in r]
            for index, record in enumerate(records):
                cases.append(check_case(record, opset, out, known))
                if (index + 1) % 200 == 0:
                    print(
                        f"  opset {opset}: checked {index + 1}/{len(records)} cases",
                        file=sys.stderr,
                        flush=True,
                    )
    return cases, runs


def summary_line(cases: list[SuiteCase], run: TestRun) -> str:
    mine = [c for c in cases if c.opset == run.opset]
    counted = [c for c in mine if c.counted]
    importer = sum(c.importer == "passed" for c in counted)
    chain = sum(c.chain == "passed" for c in counted)
    share = f" ({100 * chain / len(counted):.1f} %)" if counted else ""
    return (
        f"tf2onnx suite, opset {run.opset}: {len(mine)} cases from {run.tests} tests "
        f"({sum(run.skipped.values())} skipped, {len(run.without_case)} failed before a case, "
        f"{len(run.crashed)} crashed); onnxruntime on tf2onnx's export passes {len(counted)}; of those "
        f"the importer on tf2onnx's export passes {importer}, the project's chain {chain}{share}"
    )


def op_table(cases: list[SuiteCase]) -> list[str]:
    """Per TF op in a case's graph: cases onnxruntime passes, and how many of those the importer (on
    tf2onnx's export) and the chain pass; the ops with a gap only, worst first."""
    rows: dict[str, Counter] = {}
    for c in cases:
        if not c.counted:
            continue
        for op in c.ops or ["(no op)"]:
            row = rows.setdefault(op, Counter())
            row["onnxruntime"] += 1
            row["importer"] += c.importer == "passed"
            row["chain"] += c.chain == "passed"
    gaps = [
        (op, r) for op, r in rows.items() if r["chain"] < r["onnxruntime"] or r["importer"] < r["onnxruntime"]
    ]
    gaps.sort(key=lambda item: (item[1]["chain"] - item[1]["onnxruntime"], item[0]))
    lines = ["  TF op                          onnxruntime  importer  chain"]
    for op, r in gaps:
        lines.append(f"  {op:<30} {r['onnxruntime']:>11}  {r['importer']:>8}  {r['chain']:>5}")
    return lines


def markdown_rows(cases: list[SuiteCase]) -> list[str]:
    """docs/coverage.md rows for the counted cases the chain fails, one per test where all its cases
    fail alike."""
    by_key: dict[tuple, list[int]] = {}
    for c in cases:
        if c.counted and c.chain != "passed":
            reason = c.known or f"{c.chain}: {c.detail}"
            by_key.setdefault((c.case, reason), []).append(c.opset)
    return [
        f"| `{case}` | {', '.join(map(str, sorted(o)))} | {reason} |"
        for (case, reason), o in sorted(by_key.items())
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.coverage.tf2onnx_suite", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--opsets", type=int, nargs="+", default=list(DEFAULT_OPSETS))
    parser.add_argument(
        "--part", type=parse_part, default=None, help="K/N: the tests whose name hashes to K of N"
    )
    parser.add_argument(
        "-k", dest="name_filters", action="append", help="only tests whose name contains this"
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="one line per counted case the chain fails"
    )
    parser.add_argument("--json", type=Path, default=None, help="write every case's outcome to this file")
    parser.add_argument(
        "--markdown", action="store_true", help="print docs/coverage.md rows of the failing cases"
    )
    parser.add_argument("--keep", type=Path, default=None, help="keep the cases (ONNX models, feeds) here")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="with --keep: check the cases kept there, without running TF again",
    )
    args = parser.parse_args(argv)

    from pipeline.coverage.suite_source import SuiteUnavailable

    started = time.monotonic()
    try:
        cases, runs = sweep(
            args.opsets, args.part, args.name_filters, args.keep, args.reuse and args.keep is not None
        )
    except SuiteUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for run in runs:
        print(summary_line(cases, run))
    print("\n".join(op_table(cases)))
    if args.verbose:
        for c in cases:
            if c.counted and c.chain != "passed":
                flag = "known" if c.known else "NEW"
                print(f"  opset {c.opset} {c.chain} ({flag}): {c.case}: {c.detail}")
    lost = [c for c in cases if c.lost_by_export]
    for c in lost:
        print(
            f"  the importer converts tf2onnx's export, the project's export loses it: {c.case} (opset {c.opset})"
        )
    unexpected = [c for c in cases if c.unexpected]
    for c in unexpected:
        if c.chain == "passed":
            print(
                f"  now passes, but docs/coverage.md lists it as a known failure: {c.case} (opset {c.opset})"
            )
        else:
            print(
                f"  fails, and docs/coverage.md does not list it: {c.case} (opset {c.opset}, {c.chain}): {c.detail}"
            )
    for run in runs:
        for test, why in run.crashed.items():
            print(f"  opset {run.opset}: {test} crashed the TF process: {why}")
    if args.markdown:
        print("\n".join(markdown_rows(cases)))
    if args.json:
        args.json.write_text(json.dumps([asdict(c) for c in cases], indent=1))
    print(f"({time.monotonic() - started:.0f} s)")
    return 1 if unexpected or any(run.crashed for run in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
