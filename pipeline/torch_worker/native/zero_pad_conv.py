"""A Conv2d that takes TensorFlow's uneven zero padding itself, written into model.py as it is here.

TF's 'same' padding with a stride (and Keras's `ZeroPadding2D(correct_pad(...))` before a 'valid'
convolution) pads one row and column more after the input than before it, which nn.Conv2d's own
padding cannot say. Written as nn.ZeroPad2d + nn.Conv2d, every such convolution first copies its
whole input into a fresh, larger tensor; on CPU that copy (and the page faults of the fresh memory)
costs more than a depthwise convolution itself. This class pads evenly and gives its kernel zero taps
on the short side instead: each output sums the same products plus products with a zero weight, so
finite inputs give the same outputs (a NaN or inf input would also reach the output beside it).
Its parameters are nn.Conv2d's, so state dicts, gradients and training are unchanged.

Only for depthwise convolutions (tidy_ops.fold_padding): there the extra taps are nearly free (MACs
per output 9 -> 16, memory-bound anyway); a full convolution would do up to 1.8x the work and is
slower than the copy (figures in docs/performance.md).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn


class ZeroPadConv2d(nn.Conv2d):
    """nn.ZeroPad2d(pad) then nn.Conv2d, without the padded copy of the input: the padding is made
    even and the kernel gets zero taps on the side padded less, which gives the same sums (finite
    inputs). `pad` is nn.ZeroPad2d's (left, right, top, bottom); parameters are nn.Conv2d's."""

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        stride=1,
        dilation=1,
        groups=1,
        bias=True,
        pad=(0, 0, 0, 0),
    ):
        super().__init__(in_channels, out_channels, kernel_size, stride, 0, dilation, groups, bias)
        self.pad = (pad,) * 4 if isinstance(pad, int) else tuple(pad)  # as nn.ZeroPad2d takes it
        left, right, top, bottom = self.pad
        self.even_padding = (max(top, bottom), max(left, right))
        rows, cols = self.dilation
        # One zero tap moves the kernel by one dilation step: the padding each side is short of.
        self.zero_taps = (
            (self.even_padding[1] - left) // cols,
            (self.even_padding[1] - right) // cols,
            (self.even_padding[0] - top) // rows,
            (self.even_padding[0] - bottom) // rows,
        )

    def forward(self, x):
        weight = F.pad(self.weight, self.zero_taps)
        return F.conv2d(x, weight, self.bias, self.stride, self.even_padding, self.dilation, self.groups)

    def extra_repr(self):
        return f"{super().extra_repr()}, pad={self.pad}"
