"""MaxPool and AveragePool in the modes onnx2torch 1.5.15 refuses or gets wrong: auto_pad SAME_UPPER /
SAME_LOWER (tf2onnx writes them for padding='SAME' when a spatial size is unknown at export), pads
larger than half the kernel, asymmetric pads (tf2onnx's 'same' with odd sizes), and MaxPool's
Indices output in either storage order. The input is padded explicitly (-inf for max, zeros for average) and pooled without padding; an average divides by the
count of the window's input elements, or of its input and pad elements with count_include_pad.
Every other pool node keeps onnx2torch's converter."""

from __future__ import annotations

import torch
from torch.nn import functional

from pipeline.torch_worker.converters._functional import register
from pipeline.torch_worker.converters._same_padding import same_pads

_MAX_POOL = {1: functional.max_pool1d, 2: functional.max_pool2d, 3: functional.max_pool3d}
_AVG_POOL = {1: functional.avg_pool1d, 2: functional.avg_pool2d, 3: functional.avg_pool3d}


def _settings(node):
    attrs = node.attributes
    kernel = [int(k) for k in attrs["kernel_shape"]]
    rank = len(kernel)
    auto_pad = attrs.get("auto_pad", "NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    return {
        "kernel": kernel,
        "strides": [int(s) for s in attrs.get("strides", [1] * rank)],
        "dilations": [int(d) for d in attrs.get("dilations", [1] * rank)],
        "pads": [int(p) for p in attrs.get("pads", [0] * 2 * rank)],
        "auto_pad": auto_pad,
        "ceil_mode": bool(attrs.get("ceil_mode", 0)),
    }


def _needs_own(settings, indices: bool) -> bool:
    half = [((k - 1) * d + 1) // 2 for k, d in zip(settings["kernel"], settings["dilations"], strict=True)]
    rank = len(half)
    too_large = any(p > half[i % rank] for i, p in enumerate(settings["pads"]))
    # tf2onnx writes 'same' pooling of odd sizes as explicit pads, more at the end than at the start
    asymmetric = settings["pads"][:rank] != settings["pads"][rank:]
    return settings["auto_pad"] != "NOTSET" or too_large or asymmetric or indices


def _torch_pads(settings, x):
    """functional.pad's list (last dimension first) for the node's explicit or SAME padding."""
    rank = len(settings["kernel"])
    if settings["auto_pad"] in ("SAME_UPPER", "SAME_LOWER"):
        begins, ends = same_pads(x, settings, upper=settings["auto_pad"] == "SAME_UPPER")
    elif settings["auto_pad"] == "VALID":
        begins, ends = [0] * rank, [0] * rank
    else:
        begins, ends = settings["pads"][:rank], settings["pads"][rank:]
    pads = []
    for axis in reversed(range(rank)):
        pads += [begins[axis], ends[axis]]
    return pads, begins


def _max_pool(node, graph):
    settings = _settings(node)
    with_indices = len(node.output_values) > 1 and bool(node.output_values[1])
    if not _needs_own(settings, with_indices):
        return None
    rank = len(settings["kernel"])
    column_major = bool(node.attributes.get("storage_order", 0))
    pool = _MAX_POOL[rank]

    def max_pool(x):
        pads, begins = _torch_pads(settings, x)
        padded = functional.pad(x, pads, value=float("-inf"))
        values, flat = pool(
            padded, settings["kernel"], settings["strides"], 0, settings["dilations"],
            ceil_mode=settings["ceil_mode"], return_indices=True,
        )  # fmt: skip
        # torch's index runs over one padded plane; ONNX's over the whole unpadded input
        position = []
        rest = flat
        for axis in reversed(range(rank)):
            size = padded.shape[2 + axis]
            position.insert(0, rest % size - begins[axis])
            rest = rest // size
        sizes = [x.shape[2 + axis] for axis in range(rank)]
        order = list(reversed(range(rank))) if column_major else list(range(rank))
        index = torch.zeros_like(flat)
        for axis in order:
            index = index * sizes[axis] + position[axis]
        plane = torch.arange(x.shape[0] * x.shape[1]).reshape([x.shape[0], x.shape[1]] + [1] * rank)
        spatial = 1
        for size in sizes:
            spatial = spatial * size
        return values, index + plane * spatial

    if not with_indices:

        def max_pool_values(x):
            return max_pool(x)[0]

        return max_pool_values
    return max_pool


def _average_pool(node, graph):
    settings = _settings(node)
    if not _needs_own(settings, False):
        return None
    rank = len(settings["kernel"])
    include_pad = bool(node.attributes.get("count_include_pad", 0))
    pool = _AVG_POOL[rank]
    if any(d != 1 for d in settings["dilations"]):
        return None  # torch's average pools have no dilation; onnx2torch's converter says so

    def average_pool(x):
        pads, _ = _torch_pads(settings, x)
        window = (settings["kernel"], settings["strides"], 0, settings["ceil_mode"], True)
        total = pool(functional.pad(x, pads), *window)
        ones = functional.pad(torch.ones_like(x), pads, value=1.0 if include_pad else 0.0)
        share = pool(ones, *window)  # the fraction of each window that counts
        return total / share

    return average_pool


register("MaxPool", [8, 10, 11, 12], _max_pool, replace=True)
register("AveragePool", [7, 10, 11], _average_pool, replace=True)
