"""Built-in zoo ids: keras.applications models built offline with weights=None."""

import pytest
from cli_runner import REPO, read_report, run_cli


@pytest.mark.slow
def test_mobilenet_v2_from_its_shipped_config(tmp_path):
    out = tmp_path / "run"
    proc = run_cli("convert", "--config", REPO / "configs/models/mobilenet_v2.yaml", "--out", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = read_report(out)
    assert report["status"] == "pass"
    assert report["inputs"][0]["shape"] == [1, 96, 96, 3]
    rows = [c for s in report["stages"] for c in s["comparisons"]]
    assert {c["pair"] for c in rows} == {"tf_vs_onnx", "onnx_vs_torch", "tf_vs_torch"}
    assert all(c["passed"] and c["cosine_similarity"] > 0.9999 for c in rows)


def test_unknown_zoo_id_suggests_close_matches(tmp_path):
    proc = run_cli("convert", "keras.applications.MobileNetv2", "--out", tmp_path / "run")
    assert proc.returncode == 2
    assert "unknown zoo id 'keras.applications.MobileNetv2'" in proc.stdout
    assert "keras.applications.MobileNetV2" in proc.stdout.split("did you mean", 1)[1]
