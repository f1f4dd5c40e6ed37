"""ONNX LSTM -> torch.nn.LSTM (onnx2torch 1.5.15 has no LSTM converter).

ONNX packs the four gates as i, o, f, c with one bias block for W and one for R; torch orders them
i, f, g(=c), o with bias_ih and bias_hh. Directions: forward, reverse (run on the time-reversed
sequence) and bidirectional. Layout 0 is [seq, batch, feature]; layout 1 is batch-first.
"""

from __future__ import annotations

import torch
from onnx2torch.node_converters.registry import add_converter
from onnx2torch.onnx_graph import OnnxGraph
from onnx2torch.onnx_node import OnnxNode
from onnx2torch.utils.common import OnnxMapping, OperationConverterResult
from torch import fx, nn

# ONNX gate blocks i, o, f, c taken in torch's order i, f, g, o.
_ONNX_TO_TORCH_GATES = (0, 2, 3, 1)
_DEFAULT_ACTIVATIONS = ["Sigmoid", "Tanh", "Tanh"]


class _LSTMWrapper(nn.Module):
    """Adapts nn.LSTM to ONNX LSTM's inputs and outputs; traced to plain torch code by fx."""

    def __init__(self, lstm: nn.LSTM, reverse: bool, num_outputs: int):
        super().__init__()
        self.lstm = lstm
        self.reverse = reverse
        self.num_outputs = num_outputs

    def forward(self, x, initial_h=None, initial_c=None):
        if self.reverse:
            x = torch.flip(x, [0])
        if initial_h is None and initial_c is None:
            result = self.lstm(x)
        else:
            if initial_h is None:
                initial_h = torch.zeros_like(initial_c)
            if initial_c is None:
                initial_c = torch.zeros_like(initial_h)
            result = self.lstm(x, (initial_h, initial_c))
        y = result[0]
        y_h = result[1][0]
        y_c = result[1][1]
        if self.reverse:
            y = torch.flip(y, [0])
        directions = 2 if self.lstm.bidirectional else 1
        # torch: [seq, batch, dirs*H] -> ONNX [seq, dirs, batch, H]
        y = y.unflatten(-1, (directions, self.lstm.hidden_size)).transpose(1, 2)
        outputs = (y, y_h, y_c)[: self.num_outputs]
        return outputs if self.num_outputs > 1 else outputs[0]


def _torch_gates(array: torch.Tensor, hidden: int) -> torch.Tensor:
    blocks = array.split(hidden, dim=0)
    return torch.cat([blocks[i] for i in _ONNX_TO_TORCH_GATES], dim=0)


@add_converter(operation_type="LSTM", version=7)
@add_converter(operation_type="LSTM", version=14)
def convert_lstm(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    attrs = node.attributes
    names = list(node.input_values) + [""] * (8 - len(node.input_values))
    x_name, w_name, r_name, b_name, seq_name, h_name, c_name, p_name = names
    activations = [
        a.decode() if isinstance(a, bytes) else a for a in attrs.get("activations", _DEFAULT_ACTIVATIONS)
    ]
    direction = attrs.get("direction", "forward")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    unsupported = {
        "custom activations": activations[:3] != _DEFAULT_ACTIVATIONS[:3],
        "clip": "clip" in attrs,
        "input_forget": bool(attrs.get("input_forget", 0)),
        "layout=1 (batch-first)": bool(attrs.get("layout", 0)),
        "peepholes (input P)": bool(p_name),
        "sequence_lens (masked sequences)": bool(seq_name),
        "weights computed at run time": any(
            n not in graph.initializers for n in (w_name, r_name) + ((b_name,) if b_name else ())
        ),
    }
    if any(unsupported.values()):
        found = ", ".join(k for k, v in unsupported.items() if v)
        raise NotImplementedError(
            f"LSTM node '{node.name}': {found} not supported by the tf2torch LSTM converter"
        )

    w = graph.initializers[w_name].to_torch()  # [dirs, 4H, input]
    r = graph.initializers[r_name].to_torch()  # [dirs, 4H, H]
    hidden = int(attrs.get("hidden_size", r.shape[-1]))
    dirs = w.shape[0]
    b = graph.initializers[b_name].to_torch() if b_name else torch.zeros(dirs, 8 * hidden, dtype=w.dtype)
    lstm = nn.LSTM(w.shape[-1], hidden, bidirectional=dirs == 2)
    with torch.no_grad():
        for d in range(dirs):
            suffix = "_reverse" if d == 1 else ""
            getattr(lstm, f"weight_ih_l0{suffix}").copy_(_torch_gates(w[d], hidden))
            getattr(lstm, f"weight_hh_l0{suffix}").copy_(_torch_gates(r[d], hidden))
            getattr(lstm, f"bias_ih_l0{suffix}").copy_(_torch_gates(b[d, : 4 * hidden], hidden))
            getattr(lstm, f"bias_hh_l0{suffix}").copy_(_torch_gates(b[d, 4 * hidden :], hidden))

    wrapper = _LSTMWrapper(lstm, direction == "reverse", len(node.output_values))
    concrete = {k: None for k, present in (("initial_h", h_name), ("initial_c", c_name)) if not present}
    module = fx.symbolic_trace(wrapper, concrete_args=concrete)
    # Plain data in `meta` (deepcopy keeps it; model.pt pickles no class of this package): the native
    # passes re-trace the call without initial states when those are zeros.
    module.meta["tf2torch_lstm"] = {"reverse": wrapper.reverse, "num_outputs": wrapper.num_outputs}
    return OperationConverterResult(
        torch_module=module,
        # An empty name in the middle makes onnx2torch pass the later state by keyword.
        onnx_mapping=OnnxMapping(
            inputs=_strip_trailing_empty((x_name, h_name, c_name)), outputs=node.output_values
        ),
    )


def rebuild_without_states(module: fx.GraphModule) -> fx.GraphModule:
    """The same LSTM call traced without initial states (nn.LSTM then starts from zeros)."""
    settings = module.meta["tf2torch_lstm"]
    wrapper = _LSTMWrapper(module.lstm, settings["reverse"], settings["num_outputs"])
    traced = fx.symbolic_trace(wrapper, concrete_args={"initial_h": None, "initial_c": None})
    traced.meta["tf2torch_lstm"] = dict(settings)
    return traced


def _strip_trailing_empty(names: tuple[str, ...]) -> tuple[str, ...]:
    while names and not names[-1]:
        names = names[:-1]
    return names
