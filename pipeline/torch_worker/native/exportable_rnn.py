"""nn.GRU and nn.LSTM that torch.export takes at any sequence length, and that take a Keras mask.

torch.export decomposes nn.GRU/nn.LSTM into a loop unrolled to the example's sequence length, so an
exported program with a dynamic time axis fails (pytorch#115092: "needs a scan"). These subclasses run
torch's own kernel in eager mode and, while exporting or when given a mask, the same recurrence step
by step: as torch's scan over the time axis while exporting, as a Python loop otherwise. A mask
(time-major, True where a step counts) keeps the state, and so the output, of the steps it masks, as
Keras's masked RNNs do. Their parameters are nn.GRU's and nn.LSTM's, so state dicts load unchanged.

model.py gets this file's classes written into it, renamed GRU and LSTM (codegen.py): they import
only torch. One layer (the form the native passes write); anything else exports as nn.GRU does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ExportableGRU(nn.GRU):
    """nn.GRU; under torch.export its time loop is torch's scan, so any sequence length exports.
    `mask`: [time, batch], False where the state carries over (Keras masking)."""

    def forward(self, x, hx=None, mask=None):
        if (mask is None and not torch.compiler.is_exporting()) or self.num_layers != 1:
            return super().forward(x, hx)
        if self.batch_first:
            x, mask = x.transpose(0, 1), None if mask is None else mask.transpose(0, 1)
        directions = 2 if self.bidirectional else 1
        if hx is None:
            hx = x.new_zeros(directions, x.size(1), self.hidden_size)
        outputs, last = [], []
        for d in range(directions):
            suffix = "_l0_reverse" if d else "_l0"
            step = self._step(
                *(getattr(self, n + suffix, None) for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
            )
            h, sequence = _scan(step, hx[d], _time_steps(x, mask, reverse=bool(d)))
            outputs.append(sequence.flip(0) if d else sequence)
            last.append(h)
        out = torch.cat(outputs, -1)
        return (out.transpose(0, 1) if self.batch_first else out), torch.stack(last)

    @staticmethod
    def _step(w_ih, w_hh, b_ih, b_hh):
        def step(h, inputs):
            x, keep = inputs
            r, z, n = F.linear(x, w_ih, b_ih).chunk(3, 1)
            hr, hz, hn = F.linear(h, w_hh, b_hh).chunk(3, 1)
            r, z = torch.sigmoid(r + hr), torch.sigmoid(z + hz)
            h = torch.where(keep, (1 - z) * torch.tanh(n + r * hn) + z * h, h)
            return h, h.clone()

        return step


class ExportableLSTM(nn.LSTM):
    """nn.LSTM; under torch.export its time loop is torch's scan, so any sequence length exports.
    `mask`: [time, batch], False where the state carries over (Keras masking)."""

    def forward(self, x, hx=None, mask=None):
        if (mask is None and not torch.compiler.is_exporting()) or self.num_layers != 1 or self.proj_size:
            return super().forward(x, hx)
        if self.batch_first:
            x, mask = x.transpose(0, 1), None if mask is None else mask.transpose(0, 1)
        directions = 2 if self.bidirectional else 1
        if hx is None:
            zeros = x.new_zeros(directions, x.size(1), self.hidden_size)
            hx = (zeros, zeros)
        outputs, last_h, last_c = [], [], []
        for d in range(directions):
            suffix = "_l0_reverse" if d else "_l0"
            step = self._step(
                *(getattr(self, n + suffix, None) for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
            )
            (h, c), sequence = _scan(step, (hx[0][d], hx[1][d]), _time_steps(x, mask, reverse=bool(d)))
            outputs.append(sequence.flip(0) if d else sequence)
            last_h.append(h)
            last_c.append(c)
        out = torch.cat(outputs, -1)
        out = out.transpose(0, 1) if self.batch_first else out
        return out, (torch.stack(last_h), torch.stack(last_c))

    @staticmethod
    def _step(w_ih, w_hh, b_ih, b_hh):
        def step(state, inputs):
            (h, c), (x, keep) = state, inputs
            i, f, g, o = (F.linear(x, w_ih, b_ih) + F.linear(h, w_hh, b_hh)).chunk(4, 1)
            new_c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.where(keep, torch.sigmoid(o) * torch.tanh(new_c), h)
            c = torch.where(keep, new_c, c)
            return (h, c), h.clone()

        return step


def _time_steps(x, mask, reverse: bool):
    """What scan walks over: each step's input with whether it counts (a [batch, 1] column)."""
    keep = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device) if mask is None else mask.bool()
    keep = keep.reshape(x.size(0), x.size(1), 1)
    return (x.flip(0), keep.flip(0)) if reverse else (x, keep)


def _scan(step, initial, steps):
    """`step` over the time axis from `initial`: torch's scan while exporting (an exported loop over a
    length known at run time), a Python loop otherwise (scan would compile itself on every call)."""
    if torch.compiler.is_exporting():
        from torch._higher_order_ops.scan import scan

        return scan(step, initial, steps)
    carry, outputs = initial, []
    for t in range(steps[0].size(0)):
        carry, output = step(carry, tuple(s[t] for s in steps))
        outputs.append(output)
    return carry, torch.stack(outputs)
