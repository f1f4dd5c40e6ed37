"""How a TF variable's value becomes its torch parameter's value: the `transform` of weights_map.json.

One reader for every transform the native passes write, so that the training check (which brings TF's
updates and gradients into torch's layout) and the passes that tag parameters by value agree on what
a transform means. Framework-free (numpy only).

    none                                   same values, reshaped to the parameter's shape
    reshape(2, 3)                          the same, the shape named
    transpose                              a Dense kernel (in, out) as a Linear weight (out, in)
    permute(3, 2, 0, 1)                    a conv kernel (kh, kw, in, out) as (out, in, kh, kw); any rank
    reshape(kh, kw, 1, in * multiplier).permute(3, 2, 0, 1)
                                           a depthwise kernel as a grouped Conv2d weight
    reshape(in, out).transpose             an EinsumDense kernel (d, heads, head_dim) as a Linear weight
    transpose (gates z, r, h as r, z, n)   a GRU kernel, its gate blocks reordered for torch
    row K[, gates reordered]               row K of a stacked bias (a GRU's input and recurrent bias)

A parenthesised note that names no reordering, e.g. "(gates i, f, c, o as torch's i, f, g, o)",
documents that the order already agrees.
"""

from __future__ import annotations

import re

import numpy as np

_PERMUTE = re.compile(r"^permute\(([\d, ]+)\)$")
_RESHAPE = re.compile(r"^reshape\([\d, ]+\)$")
_ROW = re.compile(r"^row (\d+)(, gates reordered)?$")
_GRU_NOTE = "(gates z, r, h as r, z, n)"


def to_torch(transform: str, value: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """`value` (TF layout) in the torch parameter's layout and shape; None for a transform this
    module does not know (the caller says so rather than compare wrongly)."""
    value = np.asarray(value)
    base, _, note = transform.partition(" (")
    note = f"({note}" if note else ""
    reorder = note == _GRU_NOTE
    if note and not reorder and "gates" not in note:
        return None
    if base == "none" or _RESHAPE.match(base):
        out = value
    elif base == "transpose":
        out = value.T
        if reorder:
            out = out[_gru_order(out.shape[0])]
    elif match := _PERMUTE.match(base):
        axes = tuple(int(a) for a in match.group(1).split(","))
        if len(axes) != value.ndim:
            return None
        out = value.transpose(axes)
    elif base == "reshape(kh, kw, 1, in * multiplier).permute(3, 2, 0, 1)":
        out = value.reshape(value.shape[0], value.shape[1], 1, -1).transpose(3, 2, 0, 1)
    elif base == "reshape(in, out).transpose" and len(shape) == 2:
        out = value.reshape(shape[1], shape[0]).T
    elif match := _ROW.match(base):
        out = value[int(match.group(1))]
        if match.group(2):
            out = out[_gru_order(out.shape[0])]
    else:
        return None
    return out.reshape(shape) if out.size == int(np.prod(shape)) else None


def keras_axes(transform: str, rank: int) -> tuple[int, ...] | None:
    """The axes that take a parameter of this transform back to the Keras variable's order (a
    reshape to Keras's shape follows), for the transforms that are one rearrangement of the whole
    variable; a reordering of gate blocks (rows of a matrix) keeps its axes. None for a parameter
    that holds part of its variable."""
    base = transform.partition(" (")[0]
    if base == "none" or _RESHAPE.match(base):
        return tuple(range(rank))
    if base in ("transpose", "reshape(in, out).transpose") and rank == 2:
        return (1, 0)
    if base == "reshape(kh, kw, 1, in * multiplier).permute(3, 2, 0, 1)":
        base = "permute(3, 2, 0, 1)"
    if match := _PERMUTE.match(base):
        axes = [int(a) for a in match.group(1).split(",")]
        if len(axes) == rank:
            return tuple(axes.index(i) for i in range(rank))
    return None


def _gru_order(width: int) -> np.ndarray:
    """Keras's GRU gate blocks z, r, h as torch's r, z, n."""
    hidden = width // 3
    return np.concatenate([np.arange(hidden, 2 * hidden), np.arange(hidden), np.arange(2 * hidden, width)])


def conv_kernel_permutation(rank: int) -> str:
    """The transform of a Keras conv kernel of this rank ((*spatial, in, out)) to torch's (out, in, *spatial).
    The same holds for a transposed conv: Keras (*spatial, out, in), torch (in, out, *spatial)."""
    axes = (rank - 1, rank - 2, *range(rank - 2))
    return f"permute({', '.join(str(a) for a in axes)})"
