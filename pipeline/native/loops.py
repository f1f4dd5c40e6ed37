"""Loop bodies made plain torch code like the model around them, so that a model with an ONNX Loop
(Keras 3 GRU, masked and Bidirectional RNNs, tf.while_loop) gets a model.py too: the body's wrappers
are inlined with the values it sees on its first step at both input sets (recorded by running the
model), and codegen writes the body as a class of its own, run by a small Loop class in model.py."""

from __future__ import annotations

import warnings

import torch
from torch import fx

from pipeline.native import fold, inline, naming
from pipeline.native.context import PassContext


def is_loop(module: torch.nn.Module) -> bool:
    return type(module).__name__ == "OnnxLoop" and isinstance(getattr(module, "body", None), fx.GraphModule)


def loop_bodies(gm: fx.GraphModule, ctx: PassContext) -> list[str]:
    notes: list[str] = []
    for name, module in gm.named_children():
        if not is_loop(module):
            continue
        first_steps = [_first_step_inputs(gm, module.body, inputs) for inputs in (ctx.inputs_a, ctx.inputs_b)]
        if any(args is None for args in first_steps):
            notes.append(f"{name}: the loop ran no step on the samples; its body stays as onnx2torch made it")
            continue
        body_ctx = PassContext(*first_steps, ctx.tf_variables)
        steps = (
            fold.fold_constants,
            inline.inline_wrappers,
            fold.fold_constants,
            loop_bodies,
            naming.parameters_and_names,
        )
        for step in steps:
            notes += [f"{name}.body: {note}" for note in step(module.body, body_ctx)]
        ctx.reasons.update({f"{name}.body.{k}": v for k, v in body_ctx.reasons.items()})
        ctx.count("loop_bodies", 1)
    return notes


def _first_step_inputs(gm: torch.nn.Module, body: torch.nn.Module, inputs: list[torch.Tensor]):
    """The arguments `body` gets on its first call when `gm` runs on `inputs`."""
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
