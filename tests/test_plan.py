"""The stage plan (pipeline/plan.py) is the one place stages are declared: every other module reads it."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

from pipeline import artifacts, plan
from pipeline.config import ModelConfig, Tolerances, resolve_tolerance


def test_the_conversion_runs_tf_stages_before_torch_stages_in_the_plans_order():
    assert plan.CONVERT.groups(ModelConfig(native=False)) == (
        ("tf", ("load", "export")),
        ("torch", ("validate", "import")),
    )
    every = plan.CONVERT.groups(
        ModelConfig(gradients=True, torch_compile=True, train_check=True, training_check=3)
    )
    assert dict(every) == {
        # The training stages come last: the TF steps change the Keras model's weights.
        "tf": ("load", "export", "tf_gradients", "tf_training"),
        "torch": (
            "validate",
            "import",
            "native",
            "torch_export",
            "torch_compile",
            "train_check",
            "gradients",
            "training",
        ),
    }
    assert [group for group, _ in every] == ["tf", "torch"]


def test_the_defaults_run_the_native_model_and_its_export():
    assert dict(plan.CONVERT.groups(ModelConfig()))["torch"] == (
        "validate",
        "import",
        "native",
        "torch_export",
    )


def test_every_stage_name_is_unique_and_its_entry_point_exists():
    names = [stage.name for p in plan.PLANS for stage in p.stages]
    assert len(names) == len(set(names)) == len(plan.STAGES)
    for stage in plan.STAGES.values():
        module, function = stage.entry.split(":")
        spec = importlib.util.find_spec(module)
        assert spec is not None and spec.origin, stage.entry
        # read, not imported: the test process must not import TensorFlow (it imports torch)
        defined = {
            n.name for n in ast.parse(Path(spec.origin).read_text()).body if isinstance(n, ast.FunctionDef)
        }
        assert function in defined, f"{stage.entry}: no function {function}"
        side = "pipeline.tf_worker." if stage.group == "tf" else "pipeline.torch_worker."
        assert module.startswith(side), f"{stage.name} runs in the {stage.group} worker but lives in {module}"


def test_every_comparison_reads_files_the_artifacts_know_and_a_tolerance_the_config_has():
    for compared in plan.COMPARISONS.values():
        assert compared.reference in artifacts.COMPARED and compared.candidate in artifacts.COMPARED
        assert compared.tolerance_key in Tolerances.model_fields, compared
    assert plan.OUTPUT_PAIRS == ("tf_vs_onnx", "onnx_vs_torch", "tf_vs_torch")


def test_a_native_form_is_judged_with_the_tolerance_of_the_module_it_derives_from():
    tolerances = Tolerances(onnx_vs_torch={"atol": 0.5}, tf_vs_torch={"atol": 0.25})
    assert resolve_tolerance(tolerances, "onnx_vs_compiled", "y").atol == 0.5
    assert resolve_tolerance(tolerances, "tf_vs_native_second_shape", "y").atol == 0.25
    assert resolve_tolerance(tolerances, "tf_vs_onnx", "y").atol == tolerances.default.atol


@pytest.mark.parametrize("job", plan.PLANS, ids=lambda p: p.name)
def test_a_stage_reads_only_what_an_earlier_stage_of_its_job_wrote(job):
    """The worker's in-memory state couples stages of one job: the plan says who writes what."""
    for group, names in job.groups():
        written: set[str] = set()
        for name in names:
            stage = plan.STAGES[name]
            missing = set(stage.reads) - written
            assert not missing, f"{name} reads {missing}, which no earlier {group} stage of {job.name} writes"
            written |= set(stage.writes)


def test_an_unknown_stage_in_stage_timeouts_names_the_stages_from_the_plan():
    with pytest.raises(ValueError, match="did you mean 'export'") as info:
        ModelConfig(stage_timeouts={"exprot": 5})
    assert all(name in str(info.value) for name in plan.STAGES)


def test_the_architecture_page_shows_the_plan_as_it_is():
    page = (Path(__file__).resolve().parent.parent / "docs" / "architecture.md").read_text()
    rows = [
        line for line in page.splitlines() if line.startswith(("| convert |", "| localize |", "| verify |"))
    ]
    expected = [
        f"| {job.name} | `{s.name}` | {s.group} | `{s.entry}` | {' and '.join(s.enabled_by) or 'always'} | "
        f"{', '.join(c.pair for c in s.compares) or '-'} |"
        for job in plan.PLANS
        for s in job.stages
    ]
    assert rows == expected
