"""ONNX GRU -> a loop over time steps in torch (onnx2torch 1.5.15 has no GRU converter).

ONNX orders the gates z, r, h. With linear_before_reset=0 (ONNX's default) the reset gate scales the
hidden state before its recurrent weights, which nn.GRU (linear_before_reset=1 only) cannot express,
so both forms run as the explicit recurrence. Directions forward, reverse and bidirectional;
sequence_lens (entries past their length keep their state and output zeros; reverse runs start at
each entry's last step); an initial state; layout 1 (batch first). Custom activations and `clip` are
refused. The module is a class of this package (a loop over a length known at run time).
"""

from __future__ import annotations

import torch
from onnx2torch.onnx_graph import OnnxGraph
from onnx2torch.onnx_node import OnnxNode
from onnx2torch.utils.common import OnnxMapping, OperationConverterResult
from torch import nn

from pipeline.torch_worker.converters._functional import present_inputs, register_module
from pipeline.torch_worker.converters.refusal import NotConvertible


class OnnxGRU(nn.Module):
    def __init__(
        self, hidden: int, directions: list[bool], linear_before_reset: bool, batch_first: bool, outputs: int
    ):
        super().__init__()
        self.hidden = hidden
        self.directions = directions  # True: this direction runs backwards in time
        self.linear_before_reset = linear_before_reset
        self.batch_first = batch_first
        self.outputs = outputs

    def forward(self, x, w, r, b=None, sequence_lens=None, initial_h=None):
        if self.batch_first:
            x = x.transpose(0, 1)
            initial_h = None if initial_h is None else initial_h.transpose(0, 1)
        steps, batch = x.shape[0], x.shape[1]
        lengths = (
            torch.full((batch,), steps, dtype=torch.int64, device=x.device)
            if sequence_lens is None
            else sequence_lens.to(torch.int64)
        )
        ys, finals = [], []
        for d, backwards in enumerate(self.directions):
            wz, wr, wh = w[d].split(self.hidden)
            rz, rr, rh = r[d].split(self.hidden)
            if b is None:
                bw = br = torch.zeros(3 * self.hidden, dtype=x.dtype, device=x.device)
            else:
                bw, br = b[d].split(3 * self.hidden)
            bwz, bwr, bwh = bw.split(self.hidden)
            brz, brr, brh = br.split(self.hidden)
            h = (
                torch.zeros(batch, self.hidden, dtype=x.dtype, device=x.device)
                if initial_h is None
                else initial_h[d]
            )
            outputs = [torch.zeros_like(h)] * steps
            for t in range(steps - 1, -1, -1) if backwards else range(steps):
                xt = x[t]
                z = torch.sigmoid(xt @ wz.T + h @ rz.T + bwz + brz)
                reset = torch.sigmoid(xt @ wr.T + h @ rr.T + bwr + brr)
                if self.linear_before_reset:
                    candidate = torch.tanh(xt @ wh.T + reset * (h @ rh.T + brh) + bwh)
                else:
                    candidate = torch.tanh(xt @ wh.T + (reset * h) @ rh.T + brh + bwh)
                new = (1 - z) * candidate + z * h
                active = (t < lengths).unsqueeze(1)
                h = torch.where(active, new, h)
                outputs[t] = torch.where(active, new, torch.zeros_like(new))
            ys.append(torch.stack(outputs))
            finals.append(h)
        y = torch.stack(ys, dim=1)  # [seq, dirs, batch, hidden]
        y_h = torch.stack(finals)  # [dirs, batch, hidden]
        if self.batch_first:
            y, y_h = y.permute(2, 0, 1, 3), y_h.transpose(0, 1)
        return (y, y_h)[: self.outputs] if self.outputs > 1 else y


def _text(value, default: str) -> str:
    value = default if value is None else value
    return value.decode() if isinstance(value, bytes) else value


def _convert(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    attrs = node.attributes
    activations = [_text(a, "") for a in attrs.get("activations", [])]
    if activations and [a.lower() for a in activations[:2]] != ["sigmoid", "tanh"]:
        raise NotConvertible(f"GRU node '{node.name}': activations {activations} (only Sigmoid, Tanh)")
    if "clip" in attrs:
        raise NotConvertible(f"GRU node '{node.name}': cell clipping (`clip`) is not supported")
    direction = _text(attrs.get("direction"), "forward")
    directions = {"forward": [False], "reverse": [True], "bidirectional": [False, True]}[direction]
    module = OnnxGRU(
        int(attrs["hidden_size"]),
        directions,
        bool(attrs.get("linear_before_reset", 0)),
        bool(attrs.get("layout", 0)),
        len(node.output_values),
    )
    return OperationConverterResult(
        torch_module=module,
        onnx_mapping=OnnxMapping(inputs=tuple(present_inputs(node)), outputs=node.output_values),
    )


register_module("GRU", [7, 14], _convert)
