"""tf2onnx before 1.17 called NumPy APIs removed in NumPy 2 (np.cast among them). The suite must run
on NumPy 2 so that such a regression fails the conversion tests; these tests make that explicit."""

import re
import warnings
from importlib import metadata
from pathlib import Path

import numpy as np

from pipeline.compat import NUMPY2_ALIASES, patch_numpy_for_tf2onnx


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
    # Only what pipeline.compat restores may be missing; a new removed API fails here.
    assert set(missing) <= set(NUMPY2_ALIASES), missing
    patch_numpy_for_tf2onnx()
    assert all(hasattr(np, name) for name in missing)
