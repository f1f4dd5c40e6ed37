"""Batch summaries without running models: rows, regressions, JUnit and the progress views."""

import io
import xml.etree.ElementTree as ET

from pipeline.batching import summary
from pipeline.batching.progress import LineProgress, LiveProgress, make_progress


def row(entry_id, status="pass", worst=None, stage=None, message=None, cached=False):
    return {
        "id": entry_id,
        "model": f"demo.{entry_id}",
        "status": status,
        "exit_code": {"pass": 0, "tolerance_fail": 1, "error": 3}.get(status),
        "cached": cached,
        "seconds": 1.5,
        "stage": stage,
        "message": message,
        "worst": worst or {},
        "workers": {},
        "out_dir": f"/runs/{entry_id}",
        "fingerprint": "f",
    }


def test_regressions_are_new_failures_and_errors_grown_past_the_factor():
    baseline = {
        "a": row("a", worst={"tf_vs_torch": 1e-5}),
        "b": row("b", worst={"tf_vs_torch": 1e-5}),
        "c": row("c", worst={"tf_vs_torch": 1e-5}),
        "d": row("d", "error", stage="export", message="old failure"),
        "e": row("e", worst={"tf_vs_torch": 1e-9}),
    }
    now = [
        row("a", "error", stage="import", message="no converter for Foo"),
        row("b", worst={"tf_vs_torch": 2e-4}),  # 20x
        row("c", worst={"tf_vs_torch": 5e-5}),  # 5x: within the factor
        row("d", "error", stage="export", message="still failing"),  # failed before too
        row("e", worst={"tf_vs_torch": 5e-7}),  # 500x, but below the float noise floor
        row("new", "error", stage="load", message="new model"),  # not in the baseline
    ]
    found = summary.regressions(now, baseline, factor=10)
    assert [r["id"] for r in found] == ["a", "b"]
    assert "now error: no converter for Foo" in found[0]["reason"]
    assert "grew from 1e-05 to 0.0002" in found[1]["reason"]


def test_junit_reports_failures_errors_skips_and_regressions():
    rows = [
        row("ok"),
        row("tol", "tolerance_fail", stage="import", message="outside tolerance"),
        row("err", "error", stage="export", message="unsupported ops: Foo x2"),
        summary.skipped_row("off", "demo.off", "skipped", "too slow"),
        row("grew", worst={"tf_vs_torch": 1.0}),
    ]
    found = [{"id": "grew", "reason": "tf_vs_torch max|diff| grew"}]
    data = {
        "zoo": "z.yaml",
        "started_at": "now",
        "seconds": 3.0,
        "totals": summary.totals(rows, found),
        "regressions": found,
        "models": rows,
    }
    suite = ET.fromstring(summary.junit_xml(data)).find("testsuite")
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert cases["tol"].find("failure").get("message") == "import: outside tolerance"
    assert cases["err"].find("error").get("message") == "export: unsupported ops: Foo x2"
    assert cases["off"].find("skipped").get("message") == "skipped: too slow"
    assert cases["grew"].find("failure").get("type") == "regression"
    assert cases["ok"].find("failure") is None
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == (
        "5",
        "2",
        "1",
        "1",
    )


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_is_a_live_bar_on_a_terminal_and_lines_otherwise():
    assert isinstance(make_progress(Terminal()), LiveProgress)
    plain = io.StringIO()
    progress = make_progress(plain)
    assert type(progress) is LineProgress
    progress.begin(2, [row("a", cached=True)])
    progress.finished(row("b", "error", stage="export", message="boom"))
    lines = plain.getvalue().splitlines()
    assert lines == [
        "2 models: 1 cached, 1 to convert",
        "[1/2] a PASS (cached)",
        "[2/2] b ERROR at export 1.5s: boom",
    ]


def test_live_progress_prints_each_model_and_the_totals():
    screen = Terminal()
    progress = make_progress(screen)
    progress.begin(2, [])
    progress.started("a")
    progress.finished(row("a"))
    progress.started("b")
    progress.finished(row("b", "tolerance_fail", stage="validate", message="outside tolerance"))
    rows = [row("a"), row("b", "tolerance_fail", stage="validate", message="outside tolerance")]
    progress.end({"totals": summary.totals(rows, []), "baseline": None, "out_dir": "/runs/x"})
    text = screen.getvalue()
    assert "a PASS" in text and "b TOLERANCE FAIL at validate" in text
    assert "1 passed, 1 failed, 0 skipped, 0 cached; summary: /runs/x/summary.md" in text


def test_a_failed_model_row_names_the_diverging_node_when_localisation_found_one():
    comparison = {"pair": "onnx_vs_torch", "output": "y", "max_abs_diff": 0.3, "passed": False}
    result = {
        "model": "m.keras",
        "status": "tolerance_fail",
        "exit_code": 1,
        "seconds": 2.0,
        "out_dir": "/runs/m",
        "stages": [
            {
                "name": "import",
                "status": "tolerance_fail",
                "error": "outside tolerance: onnx_vs_torch 'y'",
                "comparisons": [comparison],
            },
        ],
        "localization": {
            "status": "done",
            "pairs": {
                "tf_vs_onnx": {"status": "no divergence", "culprit": None},
                "onnx_vs_torch": {
                    "status": "diverges",
                    "culprit": {"node": "gate/Sigmoid", "op_type": "Sigmoid"},
                },
            },
        },
    }
    message = summary.row_from_report("m", result, None)["message"]
    assert message == (
        "outside tolerance: onnx_vs_torch 'y' (onnx_vs_torch diverges first at gate/Sigmoid (Sigmoid))"
    )
