"""Keras RNN Loops as nn.GRU / nn.LSTM.

tf2onnx writes a Keras 3 GRU (and an LSTM it does not fuse into ONNX LSTM) as an ONNX Loop over
time steps, which the import stage runs as a Python loop. Where the Loop computes what one Keras
recurrent layer computes, it becomes that layer as torch's own module: readable, fast, and taken by
torch.export at any sequence length (a Python loop over a length known only at run time is not).

The Loop is matched by value, like the other recovered layers: each Keras GRU/LSTM weight set
(a Bidirectional layer has two) is run as nn.GRU / nn.LSTM on every time-major sequence the Loop
reads, from each initial state it carries, and the Loop's outputs that the model uses must all be
found among the module's outputs (the sequence of states, the last state) at every sample batch. A
masked RNN's Loop (Keras keeps the state where the mask is False) matches the module given that mask:
model.py's GRU/LSTM take it as a third argument (pipeline/torch_worker/native/exportable_rnn.py). A Loop
that reads a mask is matched with it or not at all: a reading without it agrees only while no sample
masks a step, and is wrong on the first padded batch a user feeds. Keras zeroes a masked step's output
where `zero_output_for_mask` is set (Bidirectional layers that return sequences): model.py then writes
that `torch.where`. A Loop that matches no reading stays a Python loop.
"""

from __future__ import annotations

import itertools
import operator
from dataclasses import dataclass

import numpy as np
import torch
from torch import fx, nn

from pipeline.torch_worker.native import fxutil
from pipeline.torch_worker.native.context import PassContext, TFVariable
from pipeline.torch_worker.native.exportable_rnn import ExportableGRU, ExportableLSTM
from pipeline.torch_worker.native.layers import tag

_GATES = {"GRU": 3, "LSTM": 4}
_DEFAULT_ACTIVATIONS = {"activation": "tanh", "recurrent_activation": "sigmoid"}


@dataclass
class _Cell:
    layer: str
    kind: str  # GRU or LSTM
    kernel: TFVariable
    recurrent: TFVariable
    bias: TFVariable | None
    config: dict
    direction: str = ""  # a Bidirectional layer's "forward" or "backward" cell
    # Keras zeroes the outputs of masked steps: zero_output_for_mask, which Bidirectional sets on the
    # layers it wraps when they return sequences. Decides between readings no sample tells apart.
    zeroes_masked_steps: bool = False


def recurrent_layers(gm: fx.GraphModule, ctx: PassContext) -> list[str]:
    loops = [
        n
        for n in gm.graph.nodes
        if n.op == "call_module" and type(fxutil.module_of(gm, n)).__name__ == "OnnxLoop"
    ]
    cells = _cells(ctx)
    if not loops or not cells:
        return []
    runs = _recordings(gm, ctx)
    done = 0
    used: set[int] = set()
    for loop in loops:
        for index, cell in enumerate(cells):
            if index in used:
                continue
            found = _match(gm, loop, cell, runs)
            if found is None:
                continue
            _replace(gm, loop, cell, *found)
            used.add(index)
            done += 1
            break
    fxutil.tidy(gm)
    ctx.count("recurrent_layers", done)
    return []


def _recordings(gm: fx.GraphModule, ctx: PassContext) -> list[dict]:
    """The values a reading must match: at every sample batch (the padded ones mask steps) and the
    second input shape."""
    return ctx.every_sample_values(gm)


def _mask_readings(args: list[fx.Node], sequence: fx.Node, runs) -> list[fx.Node | None]:
    """The masks to read the Loop with: each mask it reads, or none when it reads none. A Loop that
    reads a mask is never read without it, whatever the samples show."""
    return [a for a in args if _is_mask(a, sequence, runs)] or [None]


def _cells(ctx: PassContext) -> list[_Cell]:
    """Each Keras GRU/LSTM cell's weights, in layer order; a Bidirectional layer gives two (its
    variables list the forward cell's kernel, recurrent kernel and bias, then the backward's)."""
    by_layer: dict[str, list[TFVariable]] = {}
    for v in ctx.tf_variables or []:
        if v.layer_class in _GATES or v.layer_class == "Bidirectional":
            by_layer.setdefault(v.layer, []).append(v)
    cells = []
    for layer, variables in by_layer.items():
        config = variables[0].config
        kind = config.get("layer_class", variables[0].layer_class)
        inner = config.get("layer", config)
        if kind not in _GATES or any(
            inner.get(key, default) != default for key, default in _DEFAULT_ACTIVATIONS.items()
        ):
            continue
        names = [v.name for v in variables]
        starts = [i for i, name in enumerate(names) if name == "kernel"]
        directions = ["forward", "backward"] if len(starts) == 2 else [""] * len(starts)
        for start, direction in zip(starts, directions, strict=True):
            group = {v.name: v for v in variables[start : start + 3]}
            if "recurrent_kernel" in group:
                cells.append(
                    _Cell(
                        layer,
                        kind,
                        group["kernel"],
                        group["recurrent_kernel"],
                        group.get("bias"),
                        inner,
                        direction,
                        bool(inner.get("zero_output_for_mask"))
                        or ("layer" in config and bool(inner.get("return_sequences"))),
                    )
                )
    return cells


def _module(cell: _Cell) -> nn.Module | None:
    kernel, recurrent = cell.kernel.value, cell.recurrent.value
    features, width = kernel.shape
    hidden = recurrent.shape[0]
    if width != _GATES[cell.kind] * hidden:
        return None
    bias = cell.bias.value if cell.bias is not None else None
    if cell.kind == "GRU":
        # nn.GRU applies the reset gate after the recurrent matmul: Keras's reset_after=True, with
        # an input and a recurrent bias. Gates z, r, h in Keras; r, z, n in torch.
        if not cell.config.get("reset_after", True) or (bias is not None and bias.shape != (2, width)):
            return None
        module = ExportableGRU(features, hidden, bias=bias is not None)
        order = np.concatenate(
            [np.arange(hidden, 2 * hidden), np.arange(hidden), np.arange(2 * hidden, width)]
        )
        weights = {"weight_ih_l0": kernel.T[order], "weight_hh_l0": recurrent.T[order]}
        if bias is not None:
            weights.update(bias_ih_l0=bias[0][order], bias_hh_l0=bias[1][order])
    else:
        # Keras's gates i, f, c, o are torch's i, f, g, o; one bias, torch's second stays zero
        module = ExportableLSTM(features, hidden, bias=True)
        weights = {"weight_ih_l0": kernel.T, "weight_hh_l0": recurrent.T}
        weights["bias_ih_l0"] = bias if bias is not None else np.zeros(width, np.float32)
        weights["bias_hh_l0"] = np.zeros(width, np.float32)
    with torch.no_grad():
        for name, value in weights.items():
            getattr(module, name).copy_(torch.from_numpy(np.ascontiguousarray(value)))
    return module


def _match(gm, loop: fx.Node, cell: _Cell, runs):
    """(module, sequence node, initial state nodes, mask node, its rank, {Loop output index: what it
    is}) or None."""
    module = _module(cell)
    if module is None:
        return None
    hidden = module.hidden_size
    outputs = _used_outputs(loop)
    if outputs is None:
        return None
    args = list(dict.fromkeys(a for a in loop.args if isinstance(a, fx.Node)))
    sequences = [a for a in args if _float_tensor(a, 3, module.input_size, runs)]
    states = [a for a in args if _float_tensor(a, 2, hidden, runs)]
    state_count = 1 if cell.kind == "GRU" else 2
    choices = [None] + [tuple(c) for c in _ordered(states, state_count)]
    for sequence in sequences:
        for mask, initial in itertools.product(_mask_readings(args, sequence, runs), choices):
            mapping = _outputs_found(module, sequence, initial, mask, loop, outputs, runs, cell)
            if mapping is not None:
                mask_rank = None if mask is None else runs[0][mask.name].dim()
                return module, sequence, initial, mask, mask_rank, mapping
    return None


def _ordered(states: list[fx.Node], count: int) -> list[list[fx.Node]]:
    """Each way to start from these states (an LSTM's h and c may be the same zeros)."""
    return [list(c) for c in itertools.product(states, repeat=count)]


def _is_mask(node: fx.Node, sequence: fx.Node, runs) -> bool:
    """A boolean [time, batch] (or [time, batch, 1]) tensor beside the sequence: Keras's mask."""
    for run in runs:
        value, x = run.get(node.name), run[sequence.name]
        if not isinstance(value, torch.Tensor) or value.dtype != torch.bool:
            return False
        if tuple(value.shape) not in (tuple(x.shape[:2]), (*x.shape[:2], 1)):
            return False
    return True


def _float_tensor(node: fx.Node, rank: int, last: int, runs) -> bool:
    """A float tensor of this rank and last dimension at every input set: a time-major sequence
    (rank 3, the input features) or a state (rank 2, the hidden width)."""
    values = [run.get(node.name) for run in runs]
    return all(
        isinstance(v, torch.Tensor) and v.is_floating_point() and v.dim() == rank and v.shape[-1] == last
        for v in values
    )


def _used_outputs(loop: fx.Node) -> dict[int, list[fx.Node]] | None:
    """The Loop's outputs the model reads, by index (None when it reads the tuple itself)."""
    used: dict[int, list[fx.Node]] = {}
    for user in loop.users:
        if (
            user.op != "call_function"
            or user.target is not operator.getitem
            or not isinstance(user.args[1], int)
        ):
            return None
        used.setdefault(user.args[1], []).append(user)
    return used


def _outputs_found(module, sequence, initial, mask, loop, outputs, runs, cell) -> dict[int, str] | None:
    mapping: dict[int, list[str]] = {}
    for run in runs:
        x = run[sequence.name]
        states = None if initial is None else [run[s.name].unsqueeze(0) for s in initial]
        keep = None if mask is None else run[mask.name]
        with torch.no_grad():
            if isinstance(module, nn.LSTM):
                seq, (h, c) = module(x, None if states is None else tuple(states), keep)
                candidates = {"sequence": seq, "last_state": h[0], "last_cell": c[0]}
            else:
                seq, h = module(x, None if states is None else states[0], keep)
                candidates = {"sequence": seq, "last_state": h[0]}
        if keep is not None:
            candidates["zeroed_sequence"] = _zeroed(candidates["sequence"], keep)
        recorded = run[loop.name]
        recorded = recorded if isinstance(recorded, (tuple, list)) else (recorded,)
        for index in outputs:
            value = recorded[index] if index < len(recorded) else None
            # Readings that agree on every run so far (a zeroed and a plain sequence agree on a batch
            # that masks nothing).
            found = [k for k, v in candidates.items() if _equal(v, value)]
            agreeing = [k for k in mapping.get(index, found) if k in found]
            if not agreeing:
                return None
            mapping[index] = agreeing
    # Where the samples leave two readings, the Keras layer's own setting decides.
    preferred = "zeroed_sequence" if cell.zeroes_masked_steps else "sequence"
    return {index: preferred if preferred in names else names[0] for index, names in mapping.items()}


def _zeroed(sequence: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The sequence with the masked steps' outputs zero (Keras's zero_output_for_mask)."""
    return torch.where(mask.reshape(*mask.shape[:2], 1), sequence, 0.0)


def _equal(a: torch.Tensor, b) -> bool:
    return (
        isinstance(b, torch.Tensor)
        and a.shape == b.shape
        and b.is_floating_point()
        and torch.allclose(a, b, atol=1e-5, rtol=1e-4)
    )


def _replace(gm, loop: fx.Node, cell: _Cell, module, sequence, initial, mask, mask_rank, mapping) -> None:
    hint = f"{cell.layer}_{cell.direction}" if cell.direction else cell.layer
    name = fxutil.fresh_name(gm, hint)
    gm.add_submodule(name, module)
    sources = {
        "weight_ih_l0": (
            cell.kernel.path,
            "transpose" + (" (gates z, r, h as r, z, n)" if cell.kind == "GRU" else ""),
        ),
        "weight_hh_l0": (
            cell.recurrent.path,
            "transpose" + (" (gates z, r, h as r, z, n)" if cell.kind == "GRU" else ""),
        ),
    }
    if cell.bias is not None:
        sources["bias_ih_l0"] = (cell.bias.path, "row 0, gates reordered" if cell.kind == "GRU" else "none")
        if cell.kind == "GRU":
            sources["bias_hh_l0"] = (cell.bias.path, "row 1, gates reordered")
    if cell.kind == "LSTM":
        module.bias_hh_l0.requires_grad_(False)  # Keras has one bias: torch's second stays zero
    tag(module, hint, sources)
    graph = gm.graph
    with graph.inserting_before(loop):
        initial_states = None
        if initial is not None:
            states = [graph.call_method("unsqueeze", (s, 0)) for s in initial]
            initial_states = states[0] if len(states) == 1 else tuple(states)
        args: tuple = (sequence,) if initial_states is None else (sequence, initial_states)
        if mask is not None:
            args = (sequence, initial_states, mask)
        call = graph.call_module(name, args)
        seq = graph.call_function(operator.getitem, (call, 0))
        last = graph.call_function(operator.getitem, (call, 1))
        if isinstance(module, nn.LSTM):
            h, c = (graph.call_function(operator.getitem, (last, i)) for i in (0, 1))
        else:
            h, c = last, None
        found = {
            "sequence": seq,
            "last_state": graph.call_function(operator.getitem, (h, 0)),
        }
        if "zeroed_sequence" in mapping.values():
            keep = graph.call_method("unsqueeze", (mask, -1)) if mask_rank == 2 else mask
            found["zeroed_sequence"] = graph.call_function(torch.where, (keep, seq, 0.0))
        if c is not None:
            found["last_cell"] = graph.call_function(operator.getitem, (c, 0))
    for user in list(loop.users):
        user.replace_all_uses_with(found[mapping[user.args[1]]])
        graph.erase_node(user)
    graph.erase_node(loop)
