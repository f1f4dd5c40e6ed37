"""ONNX Resize to the spec in every mode, when the resized axes' input lengths, the scales or sizes and
the roi are known at conversion (tf2onnx's usual form for images of a fixed size).

Resize is separable: each resized axis is resampled on its own. For each axis the source coordinate of
every output position follows `coordinate_transformation_mode`; the taps around it and their weights
follow `mode` (nearest: one tap by `nearest_mode`; linear: 2 taps; cubic: 4 taps with
`cubic_coeff_a`; with `antialias` the linear and cubic filters widen by 1/scale when shrinking), taps
past the edge repeat the edge element (or get weight 0 and the rest renormalised, `exclude_outside`),
and `tf_crop_and_resize` positions outside the input take `extrapolation_value`. The tap indices and
weights are computed here once; the traced function gathers and sums. Nodes whose lengths, sizes or
scales are known only at run time compute the same in torch as they run (_resize_runtime.py).

Where torch's own `functional.interpolate` computes the same (nearest or linear over all spatial axes
of an NCHW tensor, in the coordinate modes it shares with ONNX), it is used instead: faster, and what
a person would write in model.py. "The same" is checked, not assumed: both run on a random input of
the node's shape at conversion and must agree to 1e-6.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional

from pipeline.torch_worker.converters._functional import RuntimeValue, constant, register, static_shape
from pipeline.torch_worker.converters._resize_runtime import run_time_form
from pipeline.torch_worker.converters.refusal import NotConvertible


def _text(value, default: str) -> str:
    value = default if value is None else value
    return value.decode() if isinstance(value, bytes) else value


def _source_coordinates(mode: str, out: int, length: int, scale: float, roi: tuple[float, float]):
    # In float32, as onnxruntime computes them: a scale of 0.1 (a float32 constant) maps output 3 to
    # exactly 30 there, and to 29.99999955 in float64, which floors to another pixel.
    f = np.float32
    y = np.arange(out, dtype=f)
    scale, length, roi = f(scale), f(length), (f(roi[0]), f(roi[1]))
    resized = scale * length
    if mode == "align_corners":
        return np.zeros(out) if resized == 1 else y * (length - 1) / (resized - 1)
    if mode == "asymmetric":
        return y / scale
    if mode == "tf_crop_and_resize":
        start, end = roi
        if resized == 1:
            return np.full(out, (end - start) * (length - 1) / 2) + start * (length - 1)
        return y * (end - start) * (length - 1) / (resized - 1) + start * (length - 1)
    if mode == "pytorch_half_pixel":
        return np.full(out, -0.5) if resized == 1 else (y + 0.5) / scale - 0.5
    if mode == "half_pixel":
        return (y + 0.5) / scale - 0.5
    if mode == "tf_half_pixel_for_nn":  # opset 11's mode, which tf2onnx still writes for nearest
        return (y + 0.5) / scale
    if mode == "half_pixel_symmetric":
        offset = length / 2 * (1 - out / resized)
        return offset + (y + 0.5) / scale - 0.5
    raise NotConvertible(f"Resize: coordinate_transformation_mode {mode!r} is not in the ONNX spec")


def _cubic(x: np.ndarray, a: float) -> np.ndarray:
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x <= 1, near, np.where(x < 2, far, 0.0))


def _weights(mode: str, settings: dict, ratio: float, scale: float) -> np.ndarray:
    """The filter's weights for taps at offsets start..start+n-1 from floor(x), x's fraction `ratio`."""
    if mode == "nearest":
        nearest = settings["nearest_mode"]
        if ratio == 1.0:  # an exact integer coordinate: the left tap
            return np.array([0.0, 1.0])
        right = {
            "round_prefer_floor": ratio > 0.5,
            "round_prefer_ceil": ratio >= 0.5,
            "floor": False,
            "ceil": True,
        }[nearest]
        return np.array([0.0, 1.0]) if right else np.array([1.0, 0.0])
    shrink = settings["antialias"] and scale < 1
    width = min(scale, 1.0) if shrink else 1.0
    if mode == "linear":
        start = int(math.floor(-1 / width) + 1) if shrink else 0
        offsets = np.arange(start, 2 - start) if shrink else np.array([0, 1])
        weights = np.clip(1 - np.abs((offsets - ratio) * width), 0, 1)
    else:
        start = int(math.floor(-2 / width) + 1) if shrink else -1
        offsets = np.arange(start, 2 - start) if shrink else np.arange(-1, 3)
        weights = _cubic((offsets - ratio) * width, settings["cubic_coeff_a"])
    return weights / weights.sum() if shrink else weights


def axis_taps(mode: str, settings: dict, length: int, out: int, scale: float, roi):
    """Per output position: tap indices [out, n], weights [out, n], and whether it is extrapolated."""
    x = _source_coordinates(settings["coordinate_transformation_mode"], out, length, scale, roi)
    x = x.astype(np.float64)
    floor = np.floor(x)
    ratios = np.where(x == floor, 1.0, x - floor)  # an exact integer counts as the right end of [x-1, x]
    base = floor - np.where(x == floor, 1, 0)
    weights = np.stack([_weights(mode, settings, float(r), scale) for r in ratios])
    n = weights.shape[1]
    first = 0 if mode == "nearest" else -(n // 2 - 1)
    taps = base[:, None] + first + np.arange(n)[None, :]
    if settings["exclude_outside"] and mode != "nearest":
        inside = (taps >= 0) & (taps < length)
        weights = np.where(inside, weights, 0.0)
        total = weights.sum(axis=1, keepdims=True)
        weights = weights / np.where(total == 0, 1.0, total)
    outside = None
    if settings["coordinate_transformation_mode"] == "tf_crop_and_resize":
        outside = (x < 0) | (x > length - 1)
    return np.clip(taps, 0, length - 1).astype(np.int64), weights, outside


def _settings(node) -> dict:
    attrs = node.attributes
    return {
        "mode": _text(attrs.get("mode"), "nearest"),
        "coordinate_transformation_mode": _text(attrs.get("coordinate_transformation_mode"), "half_pixel"),
        "nearest_mode": _text(attrs.get("nearest_mode"), "round_prefer_floor"),
        "cubic_coeff_a": float(attrs.get("cubic_coeff_a", -0.75)),
        "exclude_outside": bool(attrs.get("exclude_outside", 0)),
        "extrapolation_value": float(attrs.get("extrapolation_value", 0.0)),
        "antialias": bool(attrs.get("antialias", 0)),
        "keep_aspect_ratio_policy": _text(attrs.get("keep_aspect_ratio_policy"), "stretch"),
        "axes": attrs.get("axes"),
    }


def _plan(node, graph, settings):
    """For each resized axis: (axis, input length, output length, scale, roi)."""
    shape = static_shape(node.input_values[0], graph)
    if shape is None:
        raise RuntimeValue("the input's rank is unknown before run time")
    rank = len(shape)
    opset10 = len(node.input_values) == 2
    roi = None if opset10 else constant(node, graph, 1)
    scales = constant(node, graph, 1 if opset10 else 2)
    sizes = None if opset10 else constant(node, graph, 3)
    axes = [a % rank for a in settings["axes"]] if settings["axes"] is not None else list(range(rank))
    if scales is not None and scales.numel() == 0:
        scales = None
    if roi is not None and roi.numel() == 0:
        roi = None
    full_scales = [1.0] * rank
    outs = [None] * rank
    if sizes is not None and sizes.numel():
        wanted = [int(v) for v in sizes.tolist()]
        for i, axis in enumerate(axes):
            if shape[axis] is None:
                raise RuntimeValue(f"axis {axis}'s input length is unknown before run time")
            full_scales[axis] = wanted[i] / shape[axis]
            outs[axis] = wanted[i]
        policy = settings["keep_aspect_ratio_policy"]
        if policy != "stretch":
            common = (min if policy == "not_larger" else max)(full_scales[a] for a in axes)
            for axis in axes:
                full_scales[axis] = common
                outs[axis] = int(common * shape[axis] + 0.5)
    elif scales is not None:
        for i, axis in enumerate(axes):
            if float(scales[i]) == 1.0:
                outs[axis] = shape[axis]  # not resized: its length (often the unknown batch) is not needed
                continue
            if shape[axis] is None:
                raise RuntimeValue(f"axis {axis}'s input length is unknown before run time")
            full_scales[axis] = float(scales[i])
            outs[axis] = int(float(scales[i]) * shape[axis])
    else:
        raise NotConvertible(f"Resize node '{node.name}': neither scales nor sizes given")
    plan = []
    for i, axis in enumerate(axes):
        box = (0.0, 1.0)
        if roi is not None:
            values = [float(v) for v in roi.tolist()]
            box = (
                (values[i], values[len(axes) + i])
                if len(values) == 2 * len(axes)
                else (values[axis], values[rank + axis])
            )
        if outs[axis] == shape[axis] and full_scales[axis] == 1.0 and box == (0.0, 1.0):
            continue
        plan.append((axis, shape[axis], outs[axis], full_scales[axis], box))
    return plan


def _resize(node, graph):
    settings = _settings(node)
    mode = settings["mode"]
    if mode not in ("nearest", "linear", "cubic"):
        raise NotConvertible(f"Resize node '{node.name}': mode {mode!r} is not in the ONNX spec")
    rank = len(static_shape(node.input_values[0], graph) or [])
    try:
        plan = _plan(node, graph, settings)
    except RuntimeValue:
        run_time = run_time_form(node, graph, settings)
        if run_time is None:
            raise  # onnx2torch's converter
        return run_time
    steps = []
    for axis, length, out, scale, roi in plan:
        taps, weights, outside = axis_taps(mode, settings, length, out, scale, roi)
        if mode == "nearest":
            chosen = taps[np.arange(out), weights.argmax(axis=1)]
            steps.append((axis, torch.from_numpy(chosen), None, outside))
        else:
            steps.append((axis, torch.from_numpy(taps.reshape(-1)), torch.from_numpy(weights), outside))
    extrapolation = settings["extrapolation_value"]

    def resize(x, roi=None, scales=None, sizes=None):
        y = x
        outside_any = None
        for axis, index, weights, outside in steps:  # a fixed list: fx unrolls the loop
            if weights is None:
                y = torch.index_select(y, axis, index)
            else:
                n = weights.shape[1]
                gathered = torch.index_select(y, axis, index).unflatten(axis, (-1, n))
                shape = [1] * (rank + 1)
                shape[axis], shape[axis + 1] = weights.shape[0], n
                y = (gathered * weights.to(y.dtype).reshape(shape)).sum(axis + 1)
            if outside is not None:
                mask_shape = [1] * rank
                mask_shape[axis] = len(outside)
                mask = torch.from_numpy(outside).reshape(mask_shape)
                outside_any = mask if outside_any is None else outside_any | mask
        if outside_any is not None:
            y = torch.where(outside_any, torch.full_like(y, extrapolation), y)
        return y

    return _library_equivalent(node, graph, settings, steps, resize) or resize


_INTERPOLATE_MODES = {("nearest", 3): "nearest", ("nearest", 4): "nearest", ("nearest", 5): "nearest",
                      ("linear", 3): "linear", ("linear", 4): "bilinear", ("linear", 5): "trilinear"}  # fmt: skip


def _library_equivalent(node, graph, settings, steps, resize):
    """functional.interpolate in place of `resize` when it gives the same result on this node's shape."""
    shape = static_shape(node.input_values[0], graph)
    rank = len(shape)
    axes = [axis for axis, *_ in steps]
    torch_mode = _INTERPOLATE_MODES.get((settings["mode"], rank))
    if torch_mode is None or axes != list(range(2, rank)) or any(o is not None for *_, o in steps):
        return None
    if settings["antialias"] or any(d is None for d in shape[1:]):
        return None
    sizes = [
        int(index.numel() // (1 if weights is None else weights.shape[1])) for _, index, weights, _ in steps
    ]
    align = None if torch_mode == "nearest" else settings["coordinate_transformation_mode"] == "align_corners"

    def interpolate(x, roi=None, scales=None, sizes=None):
        return functional.interpolate(x, size=out_sizes, mode=torch_mode, align_corners=align)

    out_sizes = sizes
    probe = torch.rand([1, *shape[1:]], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        same = torch.allclose(resize(probe), interpolate(probe), atol=1e-6, rtol=0)
    return interpolate if same else None


register("Resize", [10, 11, 13, 18, 19], _resize, replace=True)
