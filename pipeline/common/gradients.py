"""Gradient parity: the quantity both frameworks differentiate. NumPy only.

Each output is projected onto a fixed random direction (seeded by the config's seed and the output's
name, so TF and torch draw the same one), the projections are summed into one scalar, and its gradient
with respect to every floating-point input is compared. A random projection weighs every output
element, where a plain sum would let errors of opposite sign cancel.
"""

from __future__ import annotations

import zlib

import numpy as np

FLOAT_KINDS = ("f",)


def projection(output_name: str, shape: tuple[int, ...], seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, zlib.crc32(output_name.encode())])
    return rng.standard_normal(shape).astype(np.float64)


def differentiable(feed: dict[str, np.ndarray]) -> tuple[list[str], dict[str, str]]:
    """The inputs gradients are taken for, and the others with the reason they are not."""
    taken = [n for n, v in feed.items() if v.dtype.kind in FLOAT_KINDS]
    left = {n: f"{v.dtype} input: not differentiable" for n, v in feed.items() if n not in taken}
    return taken, left
