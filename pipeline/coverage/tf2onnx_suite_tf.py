"""The TF half of the tf2onnx-suite sweep: tf2onnx's own backend tests (tests/test_backend.py of the
installed tf2onnx's sdist, suite_source.py), run with their test base hooked. Never import torch here.

Each call of the test base's `run_test_case` is one case. The hook lets the test run as upstream wrote
it (TF, tf2onnx's export, onnxruntime, the test's own comparison), keeps what it made (the frozen
GraphDef, the feeds, TF's outputs, tf2onnx's ONNX model, the test's tolerances) and then exports the
same GraphDef with the export stage's own code (the project's handlers and rewrites). tf2onnx's handler
registry is swapped so that upstream's export never sees the project's handlers.

    python -m pipeline.coverage.tf2onnx_suite_tf OUT --opset 17 [--part K/N] [-k NAME] [--after TEST]

Writes OUT/<case>/case.pkl, upstream.onnx, project.onnx and appends one JSON line per case (and per
test that made no case) to OUT/records.jsonl, flushed as it goes: the torch half restarts this process
after a crash with --after the last test begun.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import logging
import os
import pickle
import signal
import sys
import time
import unittest
import zlib
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from pipeline.errors import UnsupportedOpsError, first_line  # noqa: E402

TEST_SECONDS = 120  # one test of upstream's (with all its cases) past this is recorded as timed out


class _TestTimeout(Exception):
    pass


def in_part(test_name: str, part: tuple[int, int] | None) -> bool:
    """A deterministic share of the tests: those whose name hashes to K of N (1-based)."""
    if part is None:
        return True
    k, n = part
    return zlib.crc32(test_name.encode()) % n == k - 1


def method_name(test_id: str) -> str:
    return test_id.rsplit(".", 1)[-1]


# --- tf2onnx's handler registry: upstream's alone, or with the project's handlers ----------------


def _registry():
    from tf2onnx.handler import tf_op

    return {domain: [dict(v) for v in versions] for domain, versions in tf_op.get_opsets().items()}


@contextlib.contextmanager
def _handlers(snapshot):
    from tf2onnx.handler import tf_op

    saved = _registry()
    tf_op._OPSETS.clear()
    tf_op._OPSETS.update(copy.copy(snapshot))
    try:
        yield
    finally:
        tf_op._OPSETS.clear()
        tf_op._OPSETS.update(saved)


# --- the hook ------------------------------------------------------------------------------------


class Harvest:
    def __init__(self, out: Path, opset: int, upstream, project):
        self.out, self.opset = out, opset
        self.upstream, self.project = upstream, project  # handler registries
        self.records = (out / "records.jsonl").open("a")
        self.calls: dict[str, int] = {}

    def write(self, record: dict) -> None:
        self.records.write(json.dumps(record) + "\n")
        self.records.flush()

    def install(self, base_class) -> None:
        harvest = self
        original_run = base_class.run_test_case
        original_freeze = base_class.freeze_and_run_tf
        original_backend = base_class.run_backend

        def freeze_and_run_tf(self, func, feed_dict, outputs, *args, **kwargs):
            result, graph_def, tables = original_freeze(self, func, feed_dict, outputs, *args, **kwargs)
            # large_model tests compress the GraphDef in place afterwards: keep a copy as frozen
            self._suite["frozen"] = (result, copy.deepcopy(graph_def), tables)
            return result, graph_def, tables

        def run_backend(self, g, outputs, input_dict, large_model=False, postfix="", **kwargs):
            if postfix == "" and "model" not in self._suite:
                self._suite["model"] = g.make_model("test")
            try:
                actual = original_backend(self, g, outputs, input_dict, large_model, postfix, **kwargs)
            except Exception as exc:
                self._suite.setdefault("backend_error", f"{type(exc).__name__}: {first_line(exc)}")
                raise
            if postfix == "":
                self._suite.setdefault("actual", [np.asarray(a) for a in actual])
            return actual

        def run_test_case(self, func, feed_dict, input_names_with_port, output_names_with_port, **kwargs):
            self._suite = {}
            error = None
            with _handlers(harvest.upstream):
                try:
                    return original_run(
                        self, func, feed_dict, input_names_with_port, output_names_with_port, **kwargs
                    )
                except unittest.SkipTest:
                    raise
                except Exception as exc:
                    error = exc
                    raise
                finally:
                    harvest.case(self, feed_dict, output_names_with_port, kwargs, error)

        base_class.freeze_and_run_tf = freeze_and_run_tf
        base_class.run_backend = run_backend
        base_class.run_test_case = run_test_case

    def case(self, test, feed_dict, output_names, kwargs, error) -> None:
        test_id = method_name(test.id())
        index = self.calls[test_id] = self.calls.get(test_id, 0) + 1
        name = test_id if index == 1 else f"{test_id}#{index}"
        record = {"case": name, "test": test_id, "folder": name}
        captured = test._suite
        if "frozen" not in captured:
            record["upstream"] = "tf failed"
            record["detail"] = _describe(error) if error else "TF did not run"
            self.write(record)
            return
        expected, graph_def, tables = captured["frozen"]
        # a test's function may return more than the outputs it names; the test compares those only
        expected = [np.asarray(e) for e in expected][: len(output_names)]
        onnx_feeds = kwargs.get("onnx_feed_dict") or feed_dict
        process_args = kwargs.get("process_args") or {}
        folder = self.out / name
        folder.mkdir(parents=True, exist_ok=True)
        tolerance = {
            "rtol": kwargs.get("rtol", 1e-07),
            "atol": kwargs.get("atol", 1e-5),
            "mtol": kwargs.get("mtol"),
            "check_value": kwargs.get("check_value", True),
            "check_shape": kwargs.get("check_shape", True),
            "check_dtype": kwargs.get("check_dtype", True),
        }
        nchw_outputs = process_args.get("outputs_as_nchw", [])
        case = {
            "feeds": {k: np.asarray(v) for k, v in onnx_feeds.items()},
            "outputs": list(output_names),
            # what tf2onnx's ONNX gives in NCHW, the comparison turns back (as the test does)
            "nchw_outputs": [output_names.index(o) for o in nchw_outputs],
            "expected": expected,
            "tolerance": tolerance,
        }
        (folder / "case.pkl").write_bytes(pickle.dumps(case))
        (folder / "tf_graph.pb").write_bytes(graph_def.SerializeToString())  # to rerun an export by hand
        record["ops"] = sorted({n.op for n in graph_def.node} - {"Placeholder", "Const", "Identity", "NoOp"})
        record["process_args"] = sorted(process_args)
        if "model" in captured:
            (folder / "upstream.onnx").write_bytes(captured["model"].SerializeToString())
        record["upstream"], record["detail"] = self._upstream_outcome(test, captured, case, error)
        with _handlers(self.project):
            record["project_export"] = self._project_export(
                graph_def, list(feed_dict), list(output_names), tables, process_args, expected, folder
            )
        self.write(record)

    def _upstream_outcome(self, test, captured, case, error) -> tuple[str, str]:
        if "model" not in captured:
            return "export failed", _describe(error) if error else "no ONNX model"
        if "actual" not in captured:
            return "onnxruntime failed", captured.get("backend_error") or _describe(error)
        actual = list(captured["actual"])
        for i in case["nchw_outputs"]:
            actual[i] = np.transpose(actual[i], (0, 2, 3, 1))
        t = case["tolerance"]
        try:
            test.assert_results_equal(
                case["expected"], actual, t["rtol"], t["atol"], t["mtol"],
                t["check_value"], t["check_shape"], t["check_dtype"],
            )  # fmt: skip
        except AssertionError as exc:
            return "mismatch", _describe(exc)
        return "passed", ""

    def _project_export(self, graph_def, inputs, outputs, tables, process_args, expected, folder) -> dict:
        from pipeline.tf_worker.stages import fill_output_ranks, order_graph_io, unknown_onnx_ops
        from pipeline.tf_worker.tf2onnx_handlers import wrapping
        from pipeline.tf_worker.tf_to_onnx import graph_def_to_onnx, optimize_tf_graph

        started = time.perf_counter()
        try:
            weights: dict = {}
            optimized = optimize_tf_graph(graph_def, inputs, outputs, weights)
            nchw = (process_args.get("inputs_as_nchw", []), process_args.get("outputs_as_nchw", []))
            proto = graph_def_to_onnx(optimized, weights, inputs, outputs, {}, self.opset, tables, nchw=nchw)
            leftover = unknown_onnx_ops(proto.graph, self.opset)
            if leftover:
                raise UnsupportedOpsError("export", "tf2onnx", leftover)
            order_graph_io(proto, inputs, outputs)
            fill_output_ranks(proto, {name: np.ndim(v) for name, v in zip(outputs, expected, strict=True)})
        except Exception as exc:  # noqa: BLE001 - any export failure is this case's outcome
            return {"status": "failed", "detail": _describe(exc)}
        (folder / "project.onnx").write_bytes(proto.SerializeToString())
        record = {"status": "passed", "seconds": round(time.perf_counter() - started, 3)}
        if wrapping.FALLBACKS:
            record["upstream_fallbacks"] = list(wrapping.FALLBACKS)
        return record


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return ""
    if isinstance(exc, UnsupportedOpsError):
        return str(exc)
    return f"{type(exc).__name__}: {first_line(exc)}"[:400]


# --- running the tests ---------------------------------------------------------------------------


def load_suite(suite: Path, opset: int):
    """test_backend.py's tests, configured as its CI configures them for `opset` (tflite and tfjs off)."""
    os.environ.update(
        TF2ONNX_TEST_OPSET=str(opset),
        TF2ONNX_SKIP_TFLITE_TESTS="TRUE",
        TF2ONNX_SKIP_TFJS_TESTS="TRUE",
        TF2ONNX_TEST_BACKEND="onnxruntime",
    )
    sys.path.insert(0, str(suite))
    sys.argv[:] = ["pytest"]  # common.py parses sys.argv unless run by pytest
    import backend_test_base
    import test_backend

    tests = unittest.TestLoader().loadTestsFromModule(test_backend)
    return backend_test_base.Tf2OnnxBackendTestBase, list(_flatten(tests))


def _flatten(suite):
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from _flatten(item)
        else:
            yield item


def _on_alarm(signum, frame):
    raise _TestTimeout(f"the test ran past {TEST_SECONDS} s")


def run(out: Path, opset: int, part, name_filters, after: str | None) -> None:
    from pipeline.coverage.suite_source import suite_dir

    for name in ("tf2onnx", "tensorflow", "absl"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    base, tests = load_suite(suite_dir(), opset)
    upstream = _registry()
    from pipeline.tf_worker import tf2onnx_handlers

    tf2onnx_handlers.register()
    project = _registry()
    out.mkdir(parents=True, exist_ok=True)
    harvest = Harvest(out, opset, upstream, project)
    harvest.install(base)
    chosen = [
        t
        for t in tests
        if in_part(method_name(t.id()), part)
        and (not name_filters or any(k in method_name(t.id()) for k in name_filters))
    ]
    if after is not None:
        names = [method_name(t.id()) for t in chosen]
        chosen = chosen[names.index(after) + 1 :] if after in names else chosen
    signal.signal(signal.SIGALRM, _on_alarm)
    for index, test in enumerate(chosen):
        test_id = method_name(test.id())
        harvest.write({"begun": test_id})
        result = unittest.TestResult()
        signal.alarm(TEST_SECONDS)
        started = time.perf_counter()
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                test.run(result)
        finally:
            signal.alarm(0)
        outcome = {"test": test_id, "seconds": round(time.perf_counter() - started, 2)}
        if result.skipped:
            outcome["skipped"] = result.skipped[0][1][:300]
        problems = result.errors + result.failures
        if problems:
            outcome["error"] = problems[0][1].strip().splitlines()[-1][:300]
        if test_id not in harvest.calls and not result.skipped:
            outcome["no_case"] = True  # the test failed before it reached run_test_case
        harvest.write({"ended": outcome})
        if (index + 1) % 50 == 0 or index + 1 == len(chosen):
            print(f"ran {index + 1}/{len(chosen)} tests of tf2onnx's suite", file=sys.stderr, flush=True)


def parse_part(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    k, n = (int(x) for x in text.split("/"))
    if not 1 <= k <= n:
        raise argparse.ArgumentTypeError(f"--part {text}: K/N with 1 <= K <= N")
    return k, n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.coverage.tf2onnx_suite_tf")
    parser.add_argument("out", type=Path)
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--part", type=parse_part, default=None)
    parser.add_argument("-k", dest="name_filters", action="append")
    parser.add_argument("--after", default=None, help="skip the tests up to and including this one")
    args = parser.parse_args(argv)
    run(args.out, args.opset, args.part, args.name_filters, args.after)
    return 0


if __name__ == "__main__":
    sys.exit(main())
