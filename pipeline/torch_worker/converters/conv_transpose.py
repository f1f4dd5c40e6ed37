"""ONNX ConvTranspose with asymmetric pads, `output_shape` or auto_pad SAME (onnx2torch 1.5.15 refuses
asymmetric pads and ignores the other two).

A stride-2 `Conv2DTranspose(padding='same')` exports with pads such as [0, 0, 1, 1]: the full
transposed convolution is cropped more at the end than at the start. The converter builds
`nn.ConvTranspose{1,2,3}d` with the symmetric part of the padding and crops the rest with a slice, or
extends the end with `output_padding` where the requested output is larger (the extra positions hold
the bias only, in ONNX too). Each dimension's crop follows the ONNX spec:
total = stride * (in - 1) + output_padding + (kernel - 1) * dilation + 1 - out, split by auto_pad.
Symmetric pads keep onnx2torch's converter.

Weights or bias computed at run time (tf2onnx writes them for Conv2DBackpropInput on a filter it
transposes or quantizes), in any of those forms, are a traced function: the full transposed convolution (functional.conv_transpose{1,2,3}d, no padding), then
functional.pad with each axis's begin and end (negative: a crop; positive: positions that hold the
bias only, as in ONNX), computed from the input's shape where the sizes are only known at run time.
"""

from __future__ import annotations

import torch
from onnx2torch.onnx_graph import OnnxGraph
from onnx2torch.onnx_node import OnnxNode
from onnx2torch.utils.common import OnnxMapping, OperationConverterResult
from torch import fx, nn
from torch.nn import functional

from pipeline.torch_worker.converters._functional import (
    RuntimeValue,
    constant,
    register_module,
    registered,
    result,
    static_shape,
)
from pipeline.torch_worker.converters.refusal import NotConvertible

_CLASSES = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}


class _Cropped(nn.Module):
    def __init__(self, conv: nn.Module, crops: list[tuple[int, int]]):
        super().__init__()
        self.conv = conv
        self.crops = crops

    def forward(self, x):
        y = self.conv(x)
        index = [slice(None), slice(None)]
        for begin, end in self.crops:
            index.append(slice(begin, -end if end else None))
        return y[tuple(index)]


def _auto_pad(node: OnnxNode) -> str:
    value = node.attributes.get("auto_pad", "NOTSET")
    return value.decode() if isinstance(value, bytes) else value


def _begin_end(node: OnnxNode, graph: OnnxGraph, kernel, strides, dilations, output_padding):
    """Each spatial dimension's (begin, end) padding, negative where the output is extended."""
    rank = len(kernel)
    auto_pad = _auto_pad(node)
    output_shape = node.attributes.get("output_shape")
    if output_shape is None and auto_pad not in ("SAME_UPPER", "SAME_LOWER"):
        pads = list(node.attributes.get("pads", [0] * 2 * rank))
        return list(zip(pads[:rank], pads[rank:], strict=True))
    if output_shape is None:  # SAME: out = in * stride, so the total does not depend on the input
        totals = [
            op + (k - 1) * d + 1 - s
            for k, s, d, op in zip(kernel, strides, dilations, output_padding, strict=True)
        ]
    else:
        shape = static_shape(node.input_values[0], graph)
        if shape is None or any(d is None for d in shape[2:]):
            raise NotConvertible(
                f"ConvTranspose node '{node.name}': output_shape with a spatial input size unknown at "
                "conversion time"
            )
        sizes = shape[2:]
        totals = [
            s * (n - 1) + op + (k - 1) * d + 1 - out
            for n, k, s, d, op, out in zip(
                sizes, kernel, strides, dilations, output_padding, output_shape, strict=True
            )
        ]
    upper = auto_pad == "SAME_UPPER"
    return [(t // 2, t - t // 2) if upper else (t - t // 2, t // 2) for t in totals]


def _needs_own(node: OnnxNode) -> bool:
    pads = list(node.attributes.get("pads", []))
    rank = len(pads) // 2
    asymmetric = pads[:rank] != pads[rank:]
    return asymmetric or "output_shape" in node.attributes or _auto_pad(node) in ("SAME_UPPER", "SAME_LOWER")


def _convert(original):
    def convert(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
        try:
            weight, bias = constant(node, graph, 1), constant(node, graph, 2)
        except RuntimeValue:
            return result(_functional_form(node, graph), node)
        if not _needs_own(node):
            return original(node, graph)
        return _module_form(node, graph, weight, bias)

    return convert


def _module_form(node, graph, weight, bias) -> OperationConverterResult:
    rank = weight.dim() - 2
    attrs = node.attributes
    kernel = list(attrs.get("kernel_shape", weight.shape[2:]))
    strides = list(attrs.get("strides", [1] * rank))
    dilations = list(attrs.get("dilations", [1] * rank))
    output_padding = list(attrs.get("output_padding", [0] * rank))
    groups = int(attrs.get("group", 1))
    padding, crops = [], []
    for axis, (begin, end) in enumerate(_begin_end(node, graph, kernel, strides, dilations, output_padding)):
        if begin < 0:
            # onnxruntime clamps such pads to 0 where the spec extends the output: no answer to match
            raise NotConvertible(
                f"ConvTranspose node '{node.name}': the output is extended before its start "
                f"(padding {begin} at the beginning of spatial axis {axis})"
            )
        symmetric = max(0, min(begin, end))
        padding.append(symmetric)
        crops.append((begin - symmetric, max(0, end - symmetric)))
        output_padding[axis] += max(0, symmetric - end)
        if output_padding[axis] >= max(strides[axis], dilations[axis]):
            raise NotConvertible(
                f"ConvTranspose node '{node.name}': output extended by {output_padding[axis]} on "
                f"spatial axis {axis}, more than torch's output_padding allows (< stride or dilation)"
            )
    conv = _CLASSES[rank](
        in_channels=weight.shape[0],
        out_channels=weight.shape[1] * groups,
        kernel_size=kernel,
        stride=strides,
        padding=padding,
        output_padding=output_padding,
        groups=groups,
        bias=bias is not None,
        dilation=dilations,
    )
    with torch.no_grad():
        conv.weight.copy_(weight)
        if bias is not None:
            conv.bias.copy_(bias)
    module = conv if not any(b or e for b, e in crops) else fx.symbolic_trace(_Cropped(conv, crops))
    return OperationConverterResult(
        torch_module=module,
        onnx_mapping=OnnxMapping(inputs=(node.input_values[0],), outputs=node.output_values),
    )


_FUNCTIONS = {
    1: functional.conv_transpose1d,
    2: functional.conv_transpose2d,
    3: functional.conv_transpose3d,
}


def _functional_form(node: OnnxNode, graph: OnnxGraph, rank: int | None = None):
    attrs = node.attributes
    if rank is None:
        rank = _spatial_rank(node, graph)
    kernel = attrs.get("kernel_shape")
    strides = list(attrs.get("strides", [1] * rank))
    dilations = list(attrs.get("dilations", [1] * rank))
    output_padding = list(attrs.get("output_padding", [0] * rank))
    groups = int(attrs.get("group", 1))
    pads = list(attrs.get("pads", [0] * 2 * rank))
    output_shape = attrs.get("output_shape")
    auto_pad = _auto_pad(node)
    upper = auto_pad == "SAME_UPPER"
    conv = _FUNCTIONS[rank]

    def begin_end(x, w, axis):
        """This axis's crop at the start and at the end of the full output (negative: extension)."""
        size = x.shape[2 + axis]
        span = (w.shape[2 + axis] if kernel is None else kernel[axis]) - 1
        full = strides[axis] * (size - 1) + span * dilations[axis] + 1 + output_padding[axis]
        if output_shape is None and auto_pad not in ("SAME_UPPER", "SAME_LOWER"):
            return pads[axis], pads[axis + rank] - output_padding[axis]
        wanted = size * strides[axis] if output_shape is None else output_shape[axis]
        total = full - wanted
        begin = total // 2 if upper else total - total // 2
        return begin, total - begin - output_padding[axis]

    def conv_transpose(x, w, b=None):
        y = conv(x, w, None, strides, 0, 0, groups, dilations)
        spec = []
        for axis in reversed(range(rank)):  # functional.pad takes the last dimension first
            begin, end = begin_end(x, w, axis)
            spec += [-begin, -end]
        y = functional.pad(y, spec)
        if b is not None:
            y = y + b.reshape([1, -1] + [1] * rank)
        return y

    return conv_transpose


def _spatial_rank(node: OnnxNode, graph: OnnxGraph) -> int:
    for name in node.input_values[:2]:
        shape = static_shape(name, graph)
        if shape is not None:
            return len(shape) - 2
    kernel = node.attributes.get("kernel_shape")
    if kernel is not None:
        return len(kernel)
    raise NotConvertible(
        f"ConvTranspose node '{node.name}': the rank of its input is unknown at conversion time"
    )


for _version in (1, 11):
    register_module(
        "ConvTranspose", [_version], _convert(registered("ConvTranspose", _version)), replace=True
    )
