"""Every entry of configs/zoos/tflite-apps.yaml (app-shaped .tflite files: batch fixed at 1, float16 and
pruned weights, PReLU, transposed convolutions, MediaPipe's custom op, pixel-unit outputs) converts
end to end: PASS, a model.py, and model.pt2 exported at the model's own batch."""

from __future__ import annotations

import pytest
from cli_runner import REPO, read_report, run_zoo

from pipeline.batching.zoo_file import load_zoo

ZOO = REPO / "configs" / "zoos" / "tflite-apps.yaml"
APPS = load_zoo(ZOO)


@pytest.fixture(scope="module")
def zoo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tflite_apps")
    return out, run_zoo(ZOO, out)


@pytest.mark.parametrize("entry", APPS, ids=[e.id for e in APPS])
def test_app_converts_with_model_py_at_its_own_batch(entry, zoo_run):
    out, rows = zoo_run
    row = rows[entry.id]
    assert row["status"] == "pass", f"{row['stage']}: {row['message']}"
    report = read_report(out / entry.id)
    stages = {s["name"]: s for s in report["stages"]}
    assert stages["load"]["details"]["second_shape"] is None  # every dimension is fixed
    assert (out / entry.id / "model.py").is_file()
    exported = stages["torch_export"]
    assert exported["status"] == "pass" and exported["details"]["fixed_batch"] == 1
    if entry.id == "pruned_classifier":
        assert stages["export"]["details"]["sparse_weights_densified"] >= 1
    if entry.id == "hair_segmentation":  # both decoder layers, through their builtin form
        assert stages["export"]["details"]["custom_ops_in_builtin_form"] == {"Convolution2DTransposeBias": 2}
        assert not report["warnings"]  # the reference ran MediaPipe's own op
