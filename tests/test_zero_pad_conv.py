"""model.py's ZeroPadConv2d computes what nn.ZeroPad2d followed by nn.Conv2d computes, forward and
backward, for any zero padding it is given (TF's 'same' with a stride pads unevenly): the zero taps it
adds to the kernel must meet exactly the positions the padding would have filled."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from pipeline.torch_worker.native.zero_pad_conv import ZeroPadConv2d


@st.composite
def _cases(draw):
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    # Each side's padding differs from the other's by whole dilation steps (what fold_padding takes).
    pad = []
    for step in (dilation[1], dilation[0]):
        low = draw(st.integers(0, 3))
        pad += draw(st.permutations([low, low + step * draw(st.integers(0, 2))]))
    channels = draw(st.integers(1, 4))
    return {
        "pad": tuple(pad),
        "kernel": (draw(st.integers(1, 5)), draw(st.integers(1, 5))),
        "stride": (draw(st.integers(1, 3)), draw(st.integers(1, 3))),
        "dilation": dilation,
        "channels": channels,
        "multiplier": draw(st.integers(1, 2)),
        "bias": draw(st.booleans()),
        "size": (draw(st.integers(9, 16)), draw(st.integers(9, 16))),
        "channels_last": draw(st.booleans()),
    }


@settings(max_examples=60, deadline=None)
@given(_cases())
def test_zero_pad_conv_equals_pad_then_conv(case):
    torch.manual_seed(0)
    channels = case["channels"]
    conv = nn.Conv2d(
        channels,
        channels * case["multiplier"],
        case["kernel"],
        stride=case["stride"],
        dilation=case["dilation"],
        groups=channels,
        bias=case["bias"],
    ).double()
    merged = ZeroPadConv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.dilation,
        conv.groups,
        case["bias"],
        pad=case["pad"],
    ).double()
    merged.load_state_dict(conv.state_dict())  # the same state dict: nn.Conv2d's keys and shapes
    x = torch.randn(2, channels, *case["size"], dtype=torch.float64)
    if case["channels_last"]:
        x = x.contiguous(memory_format=torch.channels_last)
    x_a, x_b = x.clone().requires_grad_(), x.clone().requires_grad_()
    expected = conv(nn.ZeroPad2d(case["pad"])(x_a))
    got = merged(x_b)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    upstream = torch.randn_like(expected)
    expected.backward(upstream)
    got.backward(upstream)
    torch.testing.assert_close(x_b.grad, x_a.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(merged.weight.grad, conv.weight.grad, rtol=1e-12, atol=1e-12)
    assert merged.weight.grad.shape == conv.weight.shape


def test_zero_pad_conv_exports_with_dynamic_batch():
    merged = ZeroPadConv2d(6, 6, 3, stride=2, groups=6, bias=False, pad=(0, 1, 0, 1)).eval()
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(merged, (torch.randn(2, 6, 16, 16),), dynamic_shapes=({0: batch},))
    x = torch.randn(5, 6, 16, 16)
    torch.testing.assert_close(program.module()(x), merged(x))


def test_zero_pad_conv_takes_one_padding_for_every_side_as_zero_pad_2d_does():
    merged = ZeroPadConv2d(2, 2, 3, groups=2, pad=1)
    plain = nn.Conv2d(2, 2, 3, padding=1, groups=2)
    plain.load_state_dict(merged.state_dict())
    x = torch.randn(1, 2, 6, 6)
    torch.testing.assert_close(merged(x), plain(x))
