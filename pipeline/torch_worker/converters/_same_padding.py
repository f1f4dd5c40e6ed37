"""auto_pad SAME_UPPER / SAME_LOWER, computed from the input's shape at run time (tf2onnx writes it when
a spatial size is unknown at export): total = max((ceil(in / stride) - 1) * stride + dilated kernel - in, 0),
the odd element at the end (UPPER) or the beginning (LOWER). Written so fx can trace it."""

from __future__ import annotations


def same_pads(x, settings: dict, upper: bool) -> tuple[list, list]:
    begins, ends = [], []
    for axis, kernel in enumerate(settings["kernel"]):  # a loop over a fixed rank: fx unrolls it
        size = x.shape[2 + axis]
        stride = settings["strides"][axis]
        dilated = (kernel - 1) * settings["dilations"][axis] + 1
        total = (-(-size // stride) - 1) * stride + dilated - size
        total = total * (total > 0)  # max(total, 0) without a branch
        small = total // 2
        begins.append(small if upper else total - small)
        ends.append(total - small if upper else small)
    return begins, ends
