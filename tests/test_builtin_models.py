"""Built-in zoo ids: keras.applications models built offline with weights=None."""

import json
import subprocess
import sys

import pytest
from cli_runner import REPO, read_report, run_command


@pytest.mark.slow
def test_mobilenet_v2_from_its_shipped_config(tmp_path):
    out = tmp_path / "run"
    proc = run_command("convert", "--config", REPO / "configs/models/mobilenet_v2.yaml", "--out", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = read_report(out)
    assert report["status"] == "pass"
    assert report["inputs"][0]["shape"] == [1, 96, 96, 3]
    rows = [c for s in report["stages"] for c in s["comparisons"]]
    assert {c["pair"] for c in rows} == {
        "tf_vs_onnx",
        "onnx_vs_torch",
        "tf_vs_torch",
        "onnx_vs_native",
        "tf_vs_native",
        "tf_vs_native_second_shape",  # the batch is unknown: model.py and model.pt2 also at batch 2
        "onnx_vs_exported",
        "tf_vs_exported_second_shape",
    }
    assert all(c["passed"] and c["cosine_similarity"] > 0.9999 for c in rows)


def test_unknown_zoo_id_suggests_close_matches(tmp_path):
    proc = run_command("convert", "keras.applications.MobileNetv2", "--out", tmp_path / "run")
    assert proc.returncode == 2
    assert "unknown zoo id 'keras.applications.MobileNetv2'" in proc.stderr
    assert "keras.applications.MobileNetV2" in proc.stderr.split("did you mean", 1)[1]
    assert not (tmp_path / "run").exists()


# Prints, per model, the layers whose scale (BatchNorm or LayerScale gamma) lies in [0.1, 0.3], the
# range pipeline/tf_worker/builtin_models.py draws for the scale closing a residual branch; other gammas are Keras's 1.0 x U(0.8, 1.2).
_LIST_BRANCH_SCALES = """
import json, os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np
from pipeline.tf_worker import builtin_models as zoo
found = {}
for name in sys.argv[1:]:
    model = zoo.build("keras.applications." + name, (32, 32, 3), seed=0)
    found[name] = sorted(
        layer.name for layer in model.layers
        if getattr(layer, "gamma", None) is not None
        and 0.1 <= np.asarray(layer.gamma).min() and np.asarray(layer.gamma).max() <= 0.3
    )
print(json.dumps(found))
"""


def test_each_residual_branch_closes_with_a_small_scale():
    """The scale before each identity-skip Add is drawn small, and no other: counted per architecture."""
    names = ["ResNet50", "MobileNetV2", "EfficientNetB0", "ConvNeXtTiny"]
    proc = subprocess.run(
        [sys.executable, "-c", _LIST_BRANCH_SCALES, *names],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    # ResNet50: stages of 3, 4, 6, 3 bottlenecks; the first of each has a projection shortcut (a
    # BatchNorm on both sides of its Add, no identity skip), the other 12 end in `_3_bn`.
    blocks = {2: 3, 3: 4, 4: 6, 5: 3}
    assert found["ResNet50"] == sorted(
        f"conv{stage}_block{k}_3_bn" for stage, n in blocks.items() for k in range(2, n + 1)
    )
    # MobileNetV2: inverted residuals with a skip in blocks 2, 4-5, 7-9, 11-12, 14-15.
    assert found["MobileNetV2"] == sorted(f"block_{i}_project_BN" for i in (2, 4, 5, 7, 8, 9, 11, 12, 14, 15))
    # EfficientNetB0: repeats 1, 2, 2, 3, 3, 4, 1; every block but the first of a stage has a skip.
    assert found["EfficientNetB0"] == sorted(
        f"block{s}{c}_project_bn" for s, c in ["2b", "3b", "4b", "4c", "5b", "5c", "6b", "6c", "6d"]
    )
    # ConvNeXtTiny: 3, 3, 9, 3 blocks, each closed by a LayerScale (Keras initialises it to 1e-6).
    depths = [3, 3, 9, 3]
    assert found["ConvNeXtTiny"] == sorted(
        f"convnext_tiny_stage_{s}_block_{b}_layer_scale" for s, d in enumerate(depths) for b in range(d)
    )
