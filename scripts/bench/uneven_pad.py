"""Uneven zero padding before a stride-2 convolution, two ways, one thread, side by side:
nn.ZeroPad2d then the convolution (a padded copy of the input) against model.py's ZeroPadConv2d
(even padding, zero taps in the kernel: no copy, 16 taps instead of 9). Why tidy_ops.fold_padding
uses ZeroPadConv2d for depthwise convolutions only.

    .venv/bin/python scripts/bench/uneven_pad.py [--repeats 41]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from pipeline.torch_worker.native.zero_pad_conv import ZeroPadConv2d  # noqa: E402

# (what, in channels, out channels, groups, height and width): MobileNetV2's stride-2 layers at 224
# and full convolutions of the sizes ResNets and TF1 graphs pad this way.
CASES = [
    ("stem 3->32", 3, 32, 1, 224),
    ("depthwise 96", 96, 96, 96, 112),
    ("depthwise 144", 144, 144, 144, 56),
    ("depthwise 576", 576, 576, 576, 14),
    ("full 16->32", 16, 32, 1, 112),
    ("full 64->64", 64, 64, 1, 112),
    ("full 128->128", 128, 128, 1, 56),
    ("full 256->256", 256, 256, 1, 28),
]


def median_ms(call, repeats: int) -> float:
    for _ in range(3):
        call()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=41)
    repeats = parser.parse_args().repeats
    torch.set_num_threads(1)
    print("| convolution (3x3, stride 2) | batch | ZeroPad2d + Conv2d ms | ZeroPadConv2d ms | ratio |")
    print("|---|---|---|---|---|")
    with torch.no_grad():
        for batch in (1, 8):
            for what, cin, cout, groups, size in CASES:
                merged = ZeroPadConv2d(cin, cout, 3, stride=2, groups=groups, bias=False, pad=(0, 1, 0, 1))
                x = torch.randn(batch, cin, size, size).contiguous(memory_format=torch.channels_last)
                conv = nn.Conv2d(cin, cout, 3, stride=2, groups=groups, bias=False)
                padded = median_ms(lambda conv=conv, x=x: conv(F.pad(x, (0, 1, 0, 1))), repeats)
                taps = median_ms(lambda merged=merged, x=x: merged(x), repeats)
                print(
                    f"| {what} at {size}x{size} | {batch} | {padded:.3f} | {taps:.3f} | {taps / padded:.2f}x |"
                )


if __name__ == "__main__":
    main()
