"""Control flow made plain torch code like the model around it, so that a model with an ONNX Loop
(Keras 3 GRU, masked and Bidirectional RNNs, tf.while_loop) or If (tf.cond on the data) gets a
model.py too: each body's wrappers are inlined with the values it sees on its first call at both
input sets (recorded by running the model), and codegen writes each body as a class of its own, run
by a small Loop or If class written into model.py (this package's converter class, renamed)."""

from __future__ import annotations

import warnings

import torch
from torch import fx

from pipeline.torch_worker.native import fold, inline, naming
from pipeline.torch_worker.native.context import PassContext

# converter class -> (name in model.py, constructor arguments in order; the bodies among them)
CLASSES = {
    "OnnxLoop": ("Loop", ("body", "has_trip_count", "has_condition", "carried", "scanned"), ("body",)),
    "OnnxIf": (
        "If",
        ("then_branch", "else_branch", "then_args", "else_args"),
        ("then_branch", "else_branch"),
    ),
}


def is_control_flow(module: torch.nn.Module) -> bool:
    spec = CLASSES.get(type(module).__name__)
    return spec is not None and all(isinstance(getattr(module, b, None), fx.GraphModule) for b in spec[2])


def bodies(module: torch.nn.Module) -> list[tuple[str, fx.GraphModule]]:
    return [(name, getattr(module, name)) for name in CLASSES[type(module).__name__][2]]


def control_flow_bodies(gm: fx.GraphModule, ctx: PassContext) -> list[str]:
    notes: list[str] = []
    for name, module in gm.named_children():
        if not is_control_flow(module):
            continue
        for attr, body in bodies(module):
            calls = [_first_call_inputs(gm, body, inputs) for inputs in (ctx.inputs_a, ctx.inputs_b)]
            prefix = f"{name}.{attr}"
            if any(c is None for c in calls):
                # A branch the samples never took: its wrappers are inlined where their arguments are
                # constants, which needs no values.
                notes.append(
                    f"{prefix}: not run on the samples; only wrappers with constant arguments inlined"
                )
                body_ctx = PassContext(None, None, ctx.tf_variables)
                steps = (inline.inline_wrappers, control_flow_bodies, naming.parameters_and_names)
            else:
                body_ctx = PassContext(*calls, ctx.tf_variables)
                steps = (
                    fold.fold_constants,
                    inline.inline_wrappers,
                    fold.fold_constants,
                    control_flow_bodies,
                    naming.parameters_and_names,
                )
            for step in steps:
                notes += [f"{prefix}: {note}" for note in step(body, body_ctx)]
            ctx.reasons.update({f"{prefix}.{k}": v for k, v in body_ctx.reasons.items()})
        ctx.count("control_flow_bodies", 1)
    return notes


def _first_call_inputs(gm: torch.nn.Module, body: torch.nn.Module, inputs: list[torch.Tensor] | None):
    """The arguments `body` gets on its first call when `gm` runs on `inputs` (None if never called)."""
    if inputs is None:
        return None
    seen: list[list[torch.Tensor]] = []

    def keep(_module, args):
        if not seen:
            seen.append([a.detach().clone() if isinstance(a, torch.Tensor) else a for a in args])

    handle = body.register_forward_pre_hook(keep)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gm(*inputs)
    finally:
        handle.remove()
    return seen[0] if seen else None
