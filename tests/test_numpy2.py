"""tf2onnx before 1.17 called NumPy APIs removed in NumPy 2 (np.cast among them). The suite must run
on NumPy 2 so that such a regression fails the conversion tests; these tests make that explicit."""

import os
import re
import subprocess
import sys
import warnings
from importlib import metadata
from pathlib import Path

import numpy as np

from pipeline.tf_worker.compat import NUMPY2_ALIASES, patch_numpy_for_tf2onnx


def test_suite_runs_on_numpy_2():
    assert int(np.__version__.split(".")[0]) >= 2


# tf2onnx's TensorFlow.js reader still calls np.product (gone in NumPy 2); this project never reads
# tfjs models, so that module is the one exception.
NOT_USED_BY_THE_PIPELINE = {"tfjs_utils.py"}


def test_every_numpy_attribute_tf2onnx_uses_exists_in_this_numpy():
    root = Path(metadata.distribution("tf2onnx").locate_file("tf2onnx"))
    used: dict[str, str] = {}
    for path in root.rglob("*.py"):
        if path.name in NOT_USED_BY_THE_PIPELINE:
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            for name in re.findall(r"\bnp\.([A-Za-z_]\w*)", line):
                used.setdefault(name, f"{path.relative_to(root)}:{number}")
    assert "float32" in used  # the scan found tf2onnx's numpy usage at all
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        missing = {name: where for name, where in used.items() if not hasattr(np, name)}
    # Only what pipeline.tf_worker.compat restores may be missing; a new removed API fails here.
    assert set(missing) <= set(NUMPY2_ALIASES), missing
    patch_numpy_for_tf2onnx()
    assert all(hasattr(np, name) for name in missing)


LARGE_MODEL_EXPORT = """
import sys
from pipeline.tf_worker.compat import patch_numpy_for_tf2onnx
if sys.argv[2] == "patched":
    patch_numpy_for_tf2onnx()
import tf2onnx
from tf2onnx import tf_loader
graph_def, inputs, outputs, renames = tf_loader.from_saved_model(
    sys.argv[1], None, None, signatures=["serving_default"], return_tensors_to_rename=True)
tf2onnx.convert.from_graph_def(graph_def, input_names=inputs, output_names=outputs, opset=17,
                               large_model=True, output_path=sys.argv[3])
"""


def test_tf2onnx_large_model_path_needs_the_shim_on_numpy_2(models, tmp_path):
    """The external-data path (models over 2 GB) runs only with pipeline.tf_worker.compat's alias."""

    def export(mode: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [
                sys.executable,
                "-c",
                LARGE_MODEL_EXPORT,
                str(models / "affine_savedmodel"),
                mode,
                str(tmp_path / f"{mode}.zip"),
            ],
            capture_output=True,
            text=True,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
            timeout=300,
        )

    unpatched, patched = export("unpatched"), export("patched")
    assert patched.returncode == 0, patched.stderr[-2000:]
    assert (tmp_path / "patched.zip").stat().st_size > 0
    # If this starts passing, tf2onnx fixed np.product upstream and the alias can go.
    assert unpatched.returncode != 0 and "no attribute 'product'" in unpatched.stderr
