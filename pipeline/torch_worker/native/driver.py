"""The pass sequence: each pass runs on a copy, and the copy is kept only if it still matches
onnxruntime within the model's onnx_vs_torch tolerance. A pass that fails or breaks the numbers is
reverted and reported; it never changes the model's outputs beyond the tolerance."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import fx

from pipeline.compare import compare_arrays
from pipeline.config import ModelConfig, resolve_tolerance
from pipeline.torch_worker.native import (
    activity,
    control_flow,
    dropout,
    fold,
    inline,
    layers,
    naming,
    patterns,
    recurrent,
    tidy_ops,
    variables,
)
from pipeline.torch_worker.native.context import PassContext
from pipeline.torch_worker.outputs import run_module

Pass = Callable[[fx.GraphModule, PassContext], list[str]]

# Order matters: zero LSTM states and batch-dependent reshapes need onnx2torch's modules (they read
# the recorded shapes around them); folding first turns the Shape chains into constants so that the
# wrappers can be traced with those constants bound; the layer passes match the plain torch calls the
# inlining produced; naming comes last because it rebuilds the module tree.
PASSES: tuple[tuple[str, Pass], ...] = (
    ("drop_zero_states", inline.drop_zero_states),
    ("fold_constants", fold.fold_constants),
    ("reshape_by_shape", fold.reshape_by_shape),
    ("inline_wrappers", inline.inline_wrappers),
    ("fold_constants_again", fold.fold_constants),
    ("recurrent_layers", recurrent.recurrent_layers),
    ("control_flow_bodies", control_flow.control_flow_bodies),
    ("no_op_casts", tidy_ops.no_op_casts),
    ("linear", layers.linear),
    ("conv_weights", layers.conv_weights),
    ("batchnorm", layers.batchnorm),
    ("lstm_weights", layers.lstm_weights),
    # Recovered by what they compute: after the Linear layers (their weights are constants then).
    ("layer_norms", patterns.layer_norms),
    ("gelus", patterns.gelus),
    ("attention", patterns.attention),
    ("embeddings", patterns.embeddings),
    # After every pass that tags a module with its Keras layer.
    ("variables_by_value", variables.variables_by_value),
    ("dropped_parameters", layers.dropped_parameters),
    ("shared_layers", variables.shared_layers),
    ("cancel_transposes", tidy_ops.cancel_transposes),
    ("squeezed_reductions", tidy_ops.squeezed_reductions),
    ("clamps", tidy_ops.clamps),
    ("fold_padding", tidy_ops.fold_padding),  # after clamps: a pad before a max pool reads its ReLU6
    ("contiguous_inputs", tidy_ops.contiguous_inputs),
    ("scalars_and_operators", tidy_ops.scalars_and_operators),
    ("exportable_shapes", tidy_ops.exportable_shapes),
    ("activity_outputs", activity.activity_outputs),  # before dropouts: Keras drops after the penalty
    ("dropouts", dropout.dropouts),
    # After every pass that records intermediate values: an in-place activation overwrites its input.
    ("inplace_activations", tidy_ops.inplace_activations),
    ("parameters_and_names", naming.parameters_and_names),
)


# Passes verified together: a group runs on one copy and is verified once; only when the group moves
# the outputs (or a pass in it fails) are its passes run again one by one, each verified, to find and
# revert the one at fault. The first passes stay alone: the rest build on what they do.
GROUPS: tuple[tuple[str, ...], ...] = (
    ("drop_zero_states", "fold_constants", "reshape_by_shape"),
    ("inline_wrappers", "fold_constants_again", "recurrent_layers", "control_flow_bodies"),
    ("no_op_casts", "linear", "conv_weights", "batchnorm", "lstm_weights"),
    ("layer_norms", "gelus", "attention", "embeddings"),
    ("variables_by_value", "dropped_parameters", "shared_layers"),
    (
        "cancel_transposes",
        "squeezed_reductions",
        "clamps",
        "fold_padding",
        "contiguous_inputs",
        "scalars_and_operators",
        "exportable_shapes",
        "activity_outputs",
        "dropouts",
    ),
    ("inplace_activations", "parameters_and_names"),
)


def run_passes(
    gm: fx.GraphModule,
    ctx: PassContext,
    samples: list[list[torch.Tensor]],
    references: list[dict[str, np.ndarray]],
    output_names: list[str],
    cfg: ModelConfig,
    passes: tuple[tuple[str, Pass], ...] = PASSES,
) -> tuple[fx.GraphModule, list[dict[str, Any]]]:
    # What the module does at the second input shape before any pass: each pass must keep it, so a
    # pass that bakes a sequence length or image size in is reverted like one that moves the numbers.
    try:
        second = run_module(gm, ctx.inputs_b)
    except Exception:  # onnx2torch's module itself is fixed to the first shape; the stage reports it
        second = None
    checks = [(samples, references)]
    if second is not None:
        checks.append(([ctx.inputs_b], [dict(zip(output_names, second, strict=False))]))

    def verify(candidate) -> dict[str, Any]:
        worst = {"passed": True, "max_abs_diff": 0.0}
        for where, (inputs, expected) in zip(("", " at the second input shape"), checks, strict=False):
            found = _verify(candidate, inputs, expected, output_names, cfg)
            if not found["passed"]:
                return {**found, "where": where}
            worst["max_abs_diff"] = max(worst["max_abs_diff"], found["max_abs_diff"])
        return worst

    log: list[dict[str, Any]] = []
    state = {"diff": 0.0}  # the verified difference of the module as it stands
    for group in _grouped(passes):
        grouped = _run_group(gm, ctx, group, verify, state) if len(group) > 1 else None
        if grouped is not None:
            gm, entries = grouped
        else:
            entries = []
            for name, func in group:
                gm, entry = _run_one(gm, ctx, name, func, verify, state)
                entries.append(entry)
        log += entries
    return gm, log


def _grouped(passes):
    """`passes` split into GROUPS (a pass not in any group runs alone), in order."""
    group_of = {name: i for i, names in enumerate(GROUPS) for name in names}
    groups: list[list[tuple[str, Pass]]] = []
    for name, func in passes:
        key = group_of.get(name)
        if groups and key is not None and group_of.get(groups[-1][-1][0]) == key:
            groups[-1].append((name, func))
        else:
            groups.append([(name, func)])
    return groups


def _run_group(gm, ctx, group, verify, state):
    """The group on one copy, verified once; None if a pass failed or the outputs moved."""
    started = time.perf_counter()
    counts = dict(ctx.counts)
    candidate = copy.deepcopy(gm)
    before = _fingerprint(candidate)
    entries = []
    try:
        for name, func in group:
            pass_started = time.perf_counter()
            notes = func(candidate, ctx)
            candidate.eval()  # modules a pass creates start in training mode
            entries.append(_entry(name, ctx, notes, pass_started))
        changed = _fingerprint(candidate) != before
        worst = verify(candidate) if changed else {"passed": True, "max_abs_diff": state["diff"]}
    except Exception:
        worst = {"passed": False}
    if not worst["passed"]:
        ctx.counts.clear()
        ctx.counts.update(counts)
        return None
    state["diff"] = worst["max_abs_diff"]
    for entry in entries:
        entry.update(
            status="applied",
            max_abs_diff=worst["max_abs_diff"],
            verified="with its group" if changed else False,
        )
    entries[-1]["seconds"] = round(
        entries[-1]["seconds"] + time.perf_counter() - started - sum(e["seconds"] for e in entries), 3
    )
    return candidate, entries


def _run_one(gm, ctx, name, func, verify, state):
    started = time.perf_counter()
    candidate = copy.deepcopy(gm)
    before = _fingerprint(candidate)
    entry: dict[str, Any] = {"pass": name}
    try:
        notes = func(candidate, ctx)
        candidate.eval()  # modules a pass creates start in training mode
        changed = _fingerprint(candidate) != before  # nothing that computes changed: nothing to verify
        worst = verify(candidate) if changed else {"passed": True, "max_abs_diff": state["diff"]}
    except Exception as exc:
        entry.update(status="reverted", reason=f"{type(exc).__name__}: {str(exc)[:300]}")
        notes = []
    else:
        entry.update(_entry(name, ctx, notes, started))
        if worst["passed"]:
            gm, state["diff"] = candidate, worst["max_abs_diff"]
            entry.update(status="applied", max_abs_diff=worst["max_abs_diff"], verified=changed)
        else:
            entry.update(
                status="reverted",
                reason=f"outputs moved by {worst['max_abs_diff']:.3g}{worst.get('where', '')}",
            )
    entry["changes"] = ctx.counts.get(name.removesuffix("_again"), 0)
    entry["seconds"] = round(time.perf_counter() - started, 3)
    return gm, entry


def _entry(name: str, ctx: PassContext, notes: list[str], started: float) -> dict[str, Any]:
    entry: dict[str, Any] = {"pass": name, "changes": ctx.counts.get(name.removesuffix("_again"), 0)}
    if notes:
        entry["left_as_is"] = notes[:20] + ([f"... and {len(notes) - 20} more"] if len(notes) > 20 else [])
    entry["seconds"] = round(time.perf_counter() - started, 3)
    return entry


def verify_start(gm, samples, references, output_names, cfg) -> dict[str, Any]:
    """How the module the passes start from compares with onnxruntime."""
    return _verify(gm, samples, references, output_names, cfg)


def _fingerprint(gm: fx.GraphModule) -> tuple:
    """What the module computes with: its code (of every submodule) and each tensor's identity and
    in-place version. Names, tags and requires_grad are not part of it."""
    code = tuple(m.code for m in gm.modules() if isinstance(m, fx.GraphModule))
    modules = tuple((name, id(m)) for name, m in gm.named_modules())
    tensors = tuple((name, id(t), t._version) for name, t in gm.state_dict(keep_vars=True).items())
    return code, modules, tensors


def _verify(gm, samples, references, output_names, cfg) -> dict[str, Any]:
    """The worst comparison against onnxruntime over all samples and outputs."""
    worst = {"passed": True, "max_abs_diff": 0.0}
    for args, reference in zip(samples, references, strict=True):
        got = run_module(gm, args)
        if len(got) != len(output_names):
            return {"passed": False, "max_abs_diff": float("inf")}
        for name, value in zip(output_names, got, strict=True):
            tol = resolve_tolerance(cfg.tolerances, "onnx_vs_torch", name)
            row = compare_arrays(reference[name], value, tol)
            worst["max_abs_diff"] = max(worst["max_abs_diff"], float(row["max_abs_diff"]))
            worst["passed"] = worst["passed"] and row["passed"]
    return worst
