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
from pipeline.native import fold, inline, layers, loops, naming, patterns, tidy_ops
from pipeline.native.context import PassContext
from pipeline.stages.torch_outputs import run_module

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
    ("loop_bodies", loops.loop_bodies),
    ("linear", layers.linear),
    ("conv_weights", layers.conv_weights),
    ("batchnorm", layers.batchnorm),
    ("lstm_weights", layers.lstm_weights),
    # Recovered by what they compute: after the Linear layers (their weights are constants then).
    ("layer_norms", patterns.layer_norms),
    ("gelus", patterns.gelus),
    ("attention", patterns.attention),
    ("embeddings", patterns.embeddings),
    ("fold_padding", tidy_ops.fold_padding),
    ("cancel_transposes", tidy_ops.cancel_transposes),
    ("scalars_and_operators", tidy_ops.scalars_and_operators),
    # After every pass that records intermediate values: an in-place activation overwrites its input.
    ("inplace_activations", tidy_ops.inplace_activations),
    ("parameters_and_names", naming.parameters_and_names),
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
    log = []
    # What the module does at the second input shape before any pass: each pass must keep it, so a
    # pass that bakes a sequence length or image size in is reverted like one that moves the numbers.
    try:
        second = run_module(gm, ctx.inputs_b)
    except Exception:  # onnx2torch's module itself is fixed to the first shape; the stage reports it
        second = None
    applied_diff = 0.0  # the verified difference of the module as it stands
    for name, func in passes:
        started = time.perf_counter()
        candidate = copy.deepcopy(gm)
        entry: dict[str, Any] = {"pass": name}
        before = _fingerprint(candidate)
        try:
            notes = func(candidate, ctx)
            candidate.eval()  # modules a pass creates start in training mode
            if _fingerprint(candidate) == before:  # nothing that computes changed: nothing to verify
                worst = {"passed": True, "max_abs_diff": applied_diff}
                entry["verified"] = False
            else:
                worst = _verify(candidate, samples, references, output_names, cfg)
            if worst["passed"] and second is not None and entry.get("verified", True):
                at_second = _verify(
                    candidate,
                    [ctx.inputs_b],
                    [dict(zip(output_names, second, strict=False))],
                    output_names,
                    cfg,
                )
                if not at_second["passed"]:
                    worst = {**at_second, "where": " at the second input shape"}
        except Exception as exc:
            entry.update(status="reverted", reason=f"{type(exc).__name__}: {str(exc)[:300]}")
        else:
            if worst["passed"]:
                gm, applied_diff = candidate, worst["max_abs_diff"]
                entry.update(status="applied", max_abs_diff=worst["max_abs_diff"])
            else:
                entry.update(
                    status="reverted",
                    reason=f"outputs moved by {worst['max_abs_diff']:.3g}{worst.get('where', '')}",
                )
            if notes:
                entry["left_as_is"] = notes[:20] + (
                    [f"... and {len(notes) - 20} more"] if len(notes) > 20 else []
                )
        entry["changes"] = ctx.counts.get(name.removesuffix("_again"), 0)
        entry["seconds"] = round(time.perf_counter() - started, 3)
        log.append(entry)
    return gm, log


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
