"""ONNX Resize whose sizes, scales or input lengths are known at run time only (tf2onnx writes
`Resize(x, sizes=Concat(Shape(x)[:2], new_size))` for `tf.image.resize` to a computed size).

The same spec as resize.py, computed in torch at run time: per resized axis, the source coordinate of
every output position by `coordinate_transformation_mode`, then nearest (one tap by `nearest_mode`),
linear (two taps) or cubic (four taps, `cubic_coeff_a`), taps past the edge repeating the edge and
`tf_crop_and_resize` positions outside the input taking `extrapolation_value`. onnx2torch's converter,
used before, follows torch's coordinate conventions rather than the node's. `antialias`,
`exclude_outside` and a `keep_aspect_ratio_policy` other than stretch are left to onnx2torch.
"""

from __future__ import annotations

import torch

from pipeline.torch_worker.converters._functional import static_shape


def _coordinates(mode: str, out, length, scale, roi_start, roi_end):
    """Source coordinates of the output positions 0..out-1 along one axis, in float32 as onnxruntime
    computes them (see resize.py)."""
    y = torch.arange(out, dtype=torch.float32)
    resized = scale * length
    one = resized == 1
    if mode == "align_corners":
        return torch.where(one, torch.zeros_like(y), y * (length - 1) / torch.where(one, 2.0, resized - 1))
    if mode == "asymmetric":
        return y / scale
    if mode == "tf_crop_and_resize":
        span = (roi_end - roi_start) * (length - 1)
        spread = y * span / torch.where(one, 2.0, resized - 1)
        return torch.where(one, span / 2, spread) + roi_start * (length - 1)
    if mode == "pytorch_half_pixel":
        return torch.where(one, torch.full_like(y, -0.5), (y + 0.5) / scale - 0.5)
    if mode == "half_pixel":
        return (y + 0.5) / scale - 0.5
    if mode == "tf_half_pixel_for_nn":
        return (y + 0.5) / scale
    if mode == "half_pixel_symmetric":
        return length / 2 * (1 - out / resized) + (y + 0.5) / scale - 0.5
    raise ValueError(mode)


def _cubic_weight(x, a: float):
    x = x.abs()
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return torch.where(x <= 1, near, torch.where(x < 2, far, torch.zeros_like(x)))


def _along(values, axis: int, rank: int):
    shape = [1] * rank
    shape[axis] = -1
    return values.reshape(shape)


def run_time_form(node, graph, settings: dict):
    """The traced function for this node, or None for what it leaves to onnx2torch."""
    shape = static_shape(node.input_values[0], graph)
    if shape is None or settings["antialias"] or settings["exclude_outside"]:
        return None
    if settings["keep_aspect_ratio_policy"] != "stretch":
        return None
    rank = len(shape)
    names = list(node.input_values)
    opset10 = len(names) == 2
    use_sizes = not opset10 and len(names) > 3 and bool(names[3]) and not _empty_constant(names[3], graph)
    axes = [a % rank for a in settings["axes"]] if settings["axes"] is not None else list(range(rank))
    # the roi lists either the resized axes or all of them (begins, then ends)
    roi_shape = None if opset10 or len(names) < 2 or not names[1] else static_shape(names[1], graph)
    roi_half = roi_shape[0] // 2 if roi_shape and roi_shape[0] is not None else rank
    mode, ctm = settings["mode"], settings["coordinate_transformation_mode"]
    nearest, cubic_a = settings["nearest_mode"], settings["cubic_coeff_a"]
    extrapolation = settings["extrapolation_value"]

    def resize_axis(y, axis, i, roi, scales, sizes):
        length = y.shape[axis]
        if use_sizes:
            out = sizes[i]
            scale = out.to(torch.float32) / length
        else:
            scale = scales[i].to(torch.float32)
            out = torch.floor(scale * length).to(torch.int64)
        start = end = None
        if ctm == "tf_crop_and_resize":
            at = i if roi_half == len(axes) else axis
            start, end = roi[at].to(torch.float32), roi[at + roi_half].to(torch.float32)
        x = _coordinates(ctm, out, length, scale, start, end)
        floor = torch.floor(x)
        frac = x - floor
        last = length - 1
        if mode == "nearest":
            right = {
                "round_prefer_floor": frac > 0.5,
                "round_prefer_ceil": frac >= 0.5,
                "floor": torch.zeros_like(frac, dtype=torch.bool),
                "ceil": frac > 0,
            }[nearest]
            index = torch.clamp(floor + right.to(floor.dtype), 0, last).to(torch.int64)
            result = torch.index_select(y, axis, index)
        elif mode == "linear":
            low = torch.index_select(y, axis, torch.clamp(floor, 0, last).to(torch.int64))
            high = torch.index_select(y, axis, torch.clamp(floor + 1, 0, last).to(torch.int64))
            w = _along(frac.to(y.dtype), axis, rank)
            result = low * (1 - w) + high * w
        else:  # cubic: taps at floor-1 .. floor+2
            result = 0
            for offset in (-1, 0, 1, 2):
                tap = torch.index_select(y, axis, torch.clamp(floor + offset, 0, last).to(torch.int64))
                w = _along(_cubic_weight(offset - frac, cubic_a).to(y.dtype), axis, rank)
                result = result + tap * w
        outside = None
        if ctm == "tf_crop_and_resize":
            outside = _along((x < 0) | (x > last), axis, rank)
        return result, outside

    def resize(x, roi=None, scales=None, sizes=None):
        y = x
        outside_any = None
        for i, axis in enumerate(axes):
            y, outside = resize_axis(y, axis, i, roi, scales, sizes)
            if outside is not None:
                outside_any = outside if outside_any is None else outside_any | outside
        if outside_any is not None:
            y = torch.where(outside_any, torch.full_like(y, extrapolation), y)
        return y

    if opset10:

        def resize_opset10(x, scales):
            return resize(x, None, scales, None)

        return resize_opset10
    return resize


def _empty_constant(name: str, graph) -> bool:
    from onnx2torch.utils.common import get_const_value

    try:
        value = get_const_value(name, graph)
    except KeyError:
        return False
    return hasattr(value, "numel") and value.numel() == 0
