"""The native passes on the marked export (tf_worker/marked_export.py), then the real values loaded in.

On the marked export every trainable Keras variable has values no other variable has, and no graph
optimisation has folded or dropped any of them: the passes' matches by value are matches by identity
there, a zero bias or a second BatchNorm included. The module they produce is then given each Keras
variable's real value through the ties (`weight_layout.to_torch`, the transform each tie records) and
must match the real export's onnxruntime outputs. Every trainable variable must be tied first: one
that is not may sit, marked, in a constant folded from it whose effect is below any tolerance
(ConvNeXt's 1e-6 layer scales), so the outputs alone cannot show it. On either failure the caller
falls back to the passes on the real export.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from pipeline import artifacts
from pipeline.common import weight_layout
from pipeline.config import ModelConfig
from pipeline.torch_worker.native import driver, layers
from pipeline.torch_worker.native.context import PassContext, TFVariable


class MarkedTiesFailed(Exception):
    """The marked export could not give the module (the reason is the message)."""


@dataclass
class Marked:
    module: torch.nn.Module
    passes: list[dict[str, Any]]
    ctx: PassContext
    tied: int  # tensors given their real values


def marked_dir(out: Path) -> Path | None:
    folder = out / artifacts.MARKED_DIR
    return folder if (folder / "model.onnx").is_file() and (folder / artifacts.TF_WEIGHTS).is_file() else None


def run(
    folder: Path,
    cfg: ModelConfig,
    samples: list[list[torch.Tensor]],
    output_names: list[str],
    make_ctx,
    real_variables: list[TFVariable],
    references: list[dict[str, np.ndarray]],
) -> Marked:
    """`make_ctx(folder)`: the PassContext with the marked variables and Dropout inputs of `folder`;
    `references`: the real export's onnxruntime outputs per sample."""
    from pipeline.torch_worker import onnx_stages

    path = folder / "model.onnx"
    module = onnx_stages.to_torch(onnx.load(str(path)), cfg.converters)
    session = onnx_stages.onnxruntime_session(str(path))
    input_names = [i.name for i in session.get_inputs()]
    marked_references = [
        dict(zip(output_names, session.run(output_names, _feed(input_names, args)), strict=True))
        for args in samples
    ]
    start = driver.verify_start(module, samples, marked_references, output_names, cfg)
    if not start["passed"]:
        raise MarkedTiesFailed(f"onnx2torch's module of it is {start['max_abs_diff']:.3g} from onnxruntime")
    ctx: PassContext = make_ctx(folder)
    module, passes = driver.run_passes(module, ctx, samples, marked_references, output_names, cfg)
    # A marked variable no tie holds may sit in a constant computed from it (folded into another
    # weight): that constant keeps its marked value, and its effect on the outputs can be smaller than
    # any tolerance (ConvNeXt's 1e-6 layer scales). Every trainable variable must be tied.
    untied = sorted({v.path for v in ctx.tf_variables or [] if v.trainable} - tied_paths(module, ctx))
    if untied:
        shown = ", ".join(untied[:3]) + (f" and {len(untied) - 3} more" if len(untied) > 3 else "")
        raise MarkedTiesFailed(f"no parameter holds the trainable variable(s) {shown}")
    tied = load_real_values(module, ctx, {v.path: v for v in real_variables})
    found = driver.verify_start(module, samples, references, output_names, cfg)
    if not found["passed"]:
        raise MarkedTiesFailed(
            f"with the real values loaded through the ties the module is {found['max_abs_diff']:.3g} from "
            "the real export (a constant computed from a trainable variable is no tied parameter)"
        )
    ctx.tf_variables = real_variables
    return Marked(module.eval(), passes, ctx, tied)


def ties(module: torch.nn.Module, ctx: PassContext) -> list[tuple[torch.Tensor, str, str]]:
    """(tensor, TF variable path, transform) of each tied tensor: a module's SOURCE entries and the
    root-level ctx.sources."""
    found = [
        (getattr(child, name), path, transform)
        for child in module.modules()
        for name, (path, transform) in child.__dict__.get(layers.SOURCE, {}).items()
    ]
    found += [
        (getattr(module, key), path, transform)
        for key, (path, transform) in ctx.sources.items()
        if hasattr(module, key)  # a source recorded by a pass the driver reverted
    ]
    return found


def tied_paths(module: torch.nn.Module, ctx: PassContext) -> set[str]:
    return {path for _, path, _ in ties(module, ctx)}


def load_real_values(module: torch.nn.Module, ctx: PassContext, real: dict[str, TFVariable]) -> int:
    """Each tied tensor given its variable's real value in the tie's layout; returns how many."""
    found = ties(module, ctx)
    with torch.no_grad():
        for tensor, path, transform in found:
            value = weight_layout.to_torch(transform, real[path].value, tuple(tensor.shape))
            if value is None:
                raise MarkedTiesFailed(f"no real value of {path} in the layout '{transform}'")
            tensor.copy_(torch.from_numpy(np.ascontiguousarray(value)).to(tensor.dtype))
    return len(found)


def _feed(names: list[str], args: list[torch.Tensor]) -> dict[str, np.ndarray]:
    return {name: arg.numpy() for name, arg in zip(names, args, strict=True)}
