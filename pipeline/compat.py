"""Compatibility shims for library code this project runs but does not own.

tf2onnx 1.17 still calls `np.product` (removed in NumPy 2) in graph.py when it writes tensors to
external storage: its large-model path (models over 2 GB). The alias restores it with `np.prod`, the
function NumPy 1 itself pointed `product` to. tests/test_numpy2.py fails if tf2onnx starts using
another removed API, so the list stays exact.
"""

import numpy as np

NUMPY2_ALIASES = {"product": "prod"}


def patch_numpy_for_tf2onnx() -> None:
    for missing, replacement in NUMPY2_ALIASES.items():
        if not hasattr(np, missing):
            setattr(np, missing, getattr(np, replacement))
