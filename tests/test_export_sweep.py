"""The export sweep: tiny TF functions per op, layer and mode through export, validate and import.

CI runs the whole catalogue (`make sweep`); these tests run a slice of it that exercises each mechanism
added for it, and check that docs/coverage.md lists exactly the cases known to fail."""

from __future__ import annotations

import json
import re

import pytest
from cli_runner import REPO, read_report, run_command

from pipeline.coverage import export_sweep
from pipeline.coverage.tf_cases import KNOWN_FAILURES

COVERAGE_PAGE = REPO / "docs" / "coverage.md"

# One case per mechanism: complex pairs + DFT, the lowered switch_case rewrite, If, Loop reading outer
# weights, ExtractImagePatches as a Conv, OneHot's negative index, the sign-bit idiom (Keras argmax),
# functional conv in a Loop body (ConvLSTM), Pad by index, Bucketize with integer sums, ResizeArea.
SLICE = [
    "fnet mixing",
    "tf.signal.irfft",
    "tf.switch_case",
    "tf.cond[",
    "tf.while_loop[outer weights]",
    "tf.image.extract_patches[SAME]",
    "tf.one_hot[negative index]",
    "keras.ops.argmax",
    "keras.layers.ConvLSTM2D",
    "keras.ops.pad[symmetric]",
    "keras.layers.Discretization",
    "tf.image.resize[area]",
    "tf.bitwise.bitwise_and",
]


@pytest.fixture(scope="module")
def sliced(tmp_path_factory):
    out = tmp_path_factory.mktemp("export_sweep") / "outcomes.json"
    args = ["--json", str(out)] + [arg for name in SLICE for arg in ("-k", name)]
    code = export_sweep.main(args)
    return code, [export_sweep.CaseOutcome(**o) for o in json.loads(out.read_text())]


def test_each_mechanism_converts_its_case_end_to_end_at_both_opsets(sliced):
    code, outcomes = sliced
    assert code == 0, [o for o in outcomes if o.unexpected]
    for name in SLICE:
        mine = [o for o in outcomes if o.name.startswith(name) and not o.known]
        assert mine, name
        assert all(o.stage == "import" and o.status == "passed" for o in mine), mine


def test_an_op_of_a_later_opset_is_named_with_the_opset_to_use(sliced):
    _, outcomes = sliced
    (bitwise,) = [o for o in outcomes if o.name == "tf.bitwise.bitwise_and" and o.opset == 17]
    assert (
        bitwise.stage == "export"
        and "BitwiseAnd (an ONNX op from opset 18: set `opset: 18`)" in bitwise.detail
    )
    (newer,) = [o for o in outcomes if o.name == "tf.bitwise.bitwise_and" and o.opset == 18]
    assert newer.status == "passed"


def test_a_known_failure_that_passes_fails_the_sweep():
    fixed = export_sweep.CaseOutcome("x", "g", 17, "import", "passed", known="was broken")
    broken = export_sweep.CaseOutcome("y", "g", 17, "export", "failed")
    expected = export_sweep.CaseOutcome("z", "g", 17, "export", "failed", known="no ONNX op")
    assert fixed.unexpected and broken.unexpected and not expected.unexpected


def test_summary_counts_each_stage_once_per_case():
    outcomes = [
        export_sweep.CaseOutcome("a", "g", 17, "import", "passed"),
        export_sweep.CaseOutcome("b", "g", 17, "validate", "failed"),
        export_sweep.CaseOutcome("c", "g", 17, "export", "failed"),
        export_sweep.CaseOutcome("d", "g", 17, "import", "refused"),
    ]
    assert export_sweep.summary_line(outcomes, 17) == (
        "export sweep, opset 17: export 3 passed, 1 failed; validate 2 passed, 1 failed; "
        "import 1 passed, 0 failed, 1 refused (of 4 cases)"
    )


def test_the_coverage_page_lists_exactly_the_known_failures():
    text = COVERAGE_PAGE.read_text(encoding="utf-8")
    section = text[text.index("## Op coverage, measured") :]
    listed = set(
        re.findall(r"^\| `([^`]+)` \| [0-9, ]+ \| (?:export|validate|import): ", section, flags=re.MULTILINE)
    )
    assert listed == set(KNOWN_FAILURES)


def test_a_data_dependent_branch_becomes_a_torch_conditional_that_torch_export_takes(models, tmp_path):
    out = tmp_path / "run"
    proc = run_command("convert", models / "branching", "--out", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = read_report(out)
    stages = {s["name"]: s for s in report["stages"]}
    assert stages["export"]["details"]["op_types"].get("If") == 1
    assert stages["import"]["details"]["model_pt_needs_tf2torch"] == ["OnnxIf"]
    assert stages["torch_export"]["status"] == "pass"
