"""`layout: nchw`: image tensors in PyTorch's channel order. Numpy only.

tf2onnx converts the model with its 4-D inputs and outputs as NCHW (`inputs_as_nchw`,
`outputs_as_nchw`) and its transpose optimizer cancels the NHWC<->NCHW transposes inside the graph,
so the ONNX and PyTorch models take and return NCHW without transposes added at the ends. Every
artifact (inputs.npz, the outputs, the gradients) holds the ONNX layout; the TF worker, whose model
stays NHWC, converts on the way in and out. Arrays in artifacts carry a leading samples axis, so an
image is 5-D there.
"""

from __future__ import annotations

import numpy as np

LAYOUTS = ("nhwc", "nchw")
IMAGE_RANK = 4  # (batch, height, width, channels) in TF


def image_names(arrays: dict[str, np.ndarray]) -> list[str]:
    """Names of the image arrays among arrays with a leading samples axis."""
    return [name for name, value in arrays.items() if value.ndim == IMAGE_RANK + 1]


def to_artifacts(arrays: dict[str, np.ndarray], layout: str) -> dict[str, np.ndarray]:
    """TF's arrays (NHWC images) as the artifacts hold them."""
    if layout == "nhwc":
        return arrays
    return {n: _move(v, (0, 1, 4, 2, 3)) if v.ndim == IMAGE_RANK + 1 else v for n, v in arrays.items()}


def to_tf(arrays: dict[str, np.ndarray], layout: str) -> dict[str, np.ndarray]:
    """Artifact arrays as TF takes them (NHWC images)."""
    if layout == "nhwc":
        return arrays
    return {n: _move(v, (0, 1, 3, 4, 2)) if v.ndim == IMAGE_RANK + 1 else v for n, v in arrays.items()}


def _move(value: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    return np.ascontiguousarray(value.transpose(axes))
