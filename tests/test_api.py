"""The Python API (`import pipeline`), end to end on the demo CNN: typed results, the artifacts they
point to, user mistakes as exceptions, and the same outcome as the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cli_runner import REPO, run_command, shared_pool

import pipeline
from pipeline import plan


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    """demo.cnn converted once through the API, with the stage records its callback received."""
    seen: list[pipeline.StageRecord] = []
    out = tmp_path_factory.mktemp("api") / "cnn"
    result = pipeline.convert("demo.cnn", out=out, pool=shared_pool(), progress=seen.append, gradients=True)
    return result, seen, out


def test_convert_returns_a_typed_passing_result(cnn):
    result, seen, out = cnn
    assert isinstance(result, pipeline.ConversionResult)
    assert result.passed and result.status == pipeline.Status.PASS and result.exit_code == 0
    assert result.model == "demo.cnn" and result.format == "zoo" and result.out_dir == out
    assert result.failed_stage is None
    # Every stage of the plan that this config enables, in order, each a StageRecord.
    names = [s.name for s in result.stages]
    assert names == [n for _, group in plan.CONVERT.groups(_cfg(result)) for n in group]
    assert result.stage("native").status == "pass" and result.stage("gradients").status == "pass"
    with pytest.raises(KeyError, match="no stage 'nonesuch'"):
        result.stage("nonesuch")
    # The progress callback saw each stage as it was judged, as typed records.
    assert [s.name for s in seen] == names and all(isinstance(s, pipeline.StageRecord) for s in seen)


def _cfg(result):
    from pipeline.config import ModelConfig

    return ModelConfig.model_validate(result.report["config"])


def test_the_result_points_to_the_artifacts_and_carries_the_figures(cnn):
    result, _, out = cnn
    files = result.artifacts
    for name in ("model.py", "model.safetensors", "model.onnx", "model.pt", "report.html", "report.json"):
        assert files[name] == out / name and files[name].is_file()
    pairs = {row.pair for row in result.comparisons}
    assert {"tf_vs_onnx", "onnx_vs_torch", "tf_vs_torch", "tf_vs_native"} <= pairs
    assert all(row.passed for row in result.comparisons)
    assert 0 <= result.worst["tf_vs_torch"] < 1e-4
    # The figures are the report's own: read back from disk they are equal.
    again = pipeline.read_result(out)
    assert again.stages == result.stages and again.worst == result.worst
    assert "PASS" in str(result) and str(out) in str(result)


def test_the_api_and_the_command_line_agree(cnn, tmp_path):
    # The command line is a layer over the same functions: the same stages and verdicts.
    result, _, _ = cnn
    done = run_command("convert", "demo.cnn", "--gradients", "--out", tmp_path / "cli")
    assert done.returncode == result.exit_code == 0, done.stderr
    report = json.loads((tmp_path / "cli" / "report.json").read_text())
    assert [(s["name"], s["status"]) for s in report["stages"]] == [(s.name, s.status) for s in result.stages]


def test_user_mistakes_raise_with_the_exit_code_the_command_would_give(tmp_path):
    with pytest.raises(pipeline.UsageError, match="model not found") as missing:
        pipeline.convert(tmp_path / "missing.keras", out=tmp_path / "out")
    assert missing.value.exit_code == 2
    with pytest.raises(pipeline.ConfigError, match="unknown key 'opsett'.*did you mean 'opset'") as typo:
        pipeline.convert("demo.cnn", out=tmp_path / "out", opsett=17)
    assert "arguments:" in typo.value.message  # names where the bad key came from
    with pytest.raises(pipeline.UsageError, match="no model given"):
        pipeline.convert()
    with pytest.raises(pipeline.UsageError, match="workers"):
        pipeline.batch(REPO / "configs" / "zoos" / "smoke.yaml", workers=0)
    assert not (tmp_path / "out").exists()


def test_a_config_may_be_a_mapping_and_options_override_it(tmp_path):
    cfg = pipeline.api.settings({"opset": 15, "samples": 4}, {"opset": 16})
    assert (cfg.opset, cfg.samples) == (16, 4)


def test_verify_checks_a_hand_written_port(tmp_path):
    port = f"{REPO / 'tests' / 'ports' / 'demo_ports.py'}:CNN"
    result = pipeline.verify("demo.cnn", port, out=tmp_path / "verify", pool=shared_pool())
    assert result.passed, result
    assert [s.name for s in result.stages][-1] == "port"
    assert result.report["port"]["rows"] and result.worst["tf_vs_port"] < 1e-4


def test_batch_returns_rows_that_open_into_full_results(tmp_path):
    zoo = tmp_path / "zoo.yaml"
    zoo.write_text(
        "models:\n  - {id: linear, model: demo.linear_regression}\n  - {id: gone, model: gone.keras}\n"
    )
    result = pipeline.batch(zoo, out=tmp_path / "out", workers=1, progress=False, pool=shared_pool())
    assert isinstance(result, pipeline.BatchResult)
    assert not result.passed and result.exit_code == 1
    assert result.totals["passed"] == 1 and result.totals["failed"] == 1
    linear, gone = result.row("linear"), result.row("gone")
    assert linear.status == "pass" and linear.result().stage("native").status == "pass"
    assert gone.status == "error" and gone.stage == "load" and "model not found" in gone.message
    with pytest.raises(pipeline.UsageError, match="did not run"):
        gone.result()
    assert all(path.is_file() for path in result.files.values())
    assert set(result.files) == {"summary.html", "summary.md", "summary.json", "junit.xml"}


def test_importing_the_api_loads_no_framework():
    code = (
        "import sys, pipeline; pipeline.convert; pipeline.batch; pipeline.ConversionResult; "
        "print(sorted(m for m in ('tensorflow', 'torch', 'onnxruntime', 'keras') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr


def test_every_public_name_resolves():
    for name in pipeline.__all__:
        assert getattr(pipeline, name) is not None
    with pytest.raises(AttributeError):
        pipeline.nonesuch  # noqa: B018
    assert Path(pipeline.api.__file__).name == "api.py"


def test_every_public_function_and_member_is_documented():
    # The API reference page is generated from these docstrings (scripts/build_docs.py).
    for name in pipeline.API_NAMES:
        obj = getattr(pipeline, name)
        assert obj.__doc__, name
        for attr, member in vars(obj).items() if isinstance(obj, type) else ():
            if attr.startswith("_") or attr in getattr(obj, "__dataclass_fields__", {}):
                continue
            function = member.fget if isinstance(member, property) else getattr(member, "__func__", member)
            if callable(function):
                assert function.__doc__, f"{name}.{attr}"
