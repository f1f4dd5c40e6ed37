"""Stages `torch_export`, `torch_compile` and `train_check` (torch worker), on the native model of
stage `native`.

torch_export: torch.export.export with every dimension dynamic that TF's model leaves unknown (the
batch, sequence lengths, image sizes), saved as model.pt2 and run again at the second input shape. torch_compile
(`torch_compile: true`): torch.compile of the native model. Both outputs are compared with onnxruntime's.

train_check: 20 SGD steps on random targets; the loss must fall and every trainable parameter get a
gradient.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline import artifacts
from pipeline.config import ModelConfig
from pipeline.errors import ConversionError
from pipeline.torch_worker.native.context import with_extra_row
from pipeline.torch_worker.outputs import run_module, save_module_outputs, second_input_set

_NO_NATIVE = "no native model: stage native was skipped"
TRAIN_STEPS = 20
TRAIN_BATCH = 4


def torch_export(cfg: ModelConfig, fmt: str, out: Path, state: dict[str, Any]) -> dict[str, Any]:
    if "native_module" not in state:
        return {"skipped": _NO_NATIVE}
    model = state["native_module"]
    input_names, output_names = state["input_names"], state["output_names"]
    feeds = artifacts.load_arrays(out / artifacts.INPUTS)
    first = [np.asarray(feeds[n][0], order="C") for n in input_names]
    # A model whose batch TF fixes (a .tflite app's batch of 1) is exported and checked at that batch,
    # on a second input set of the same shape.
    second, batch_dynamic = second_input_set(out, input_names)
    example = first
    if batch_dynamic:
        # An example batch of 1 would make torch.export specialise the batch to 1.
        example = first if first[0].shape[0] > 1 else with_extra_row(first)
        if second[0].shape[:1] == example[0].shape[:1]:  # the example's batch was raised from 1
            second = with_extra_row(second)
    args = tuple(torch.from_numpy(a) for a in example)
    dynamic = dynamic_dims(example, second)
    details: dict[str, Any] = {
        "dynamic_dims": {n: sorted(d) for n, d in zip(input_names, dynamic, strict=True)}
    }
    (out / artifacts.EXPORTED_PROGRAM).unlink(missing_ok=True)
    started = time.perf_counter()
    program, details["dims"] = _export(model, args, dynamic)
    artifacts.write_atomic(out / artifacts.EXPORTED_PROGRAM, lambda tmp: torch.export.save(program, str(tmp)))
    details["export_seconds"] = round(time.perf_counter() - started, 3)
    exported = torch.export.load(str(out / artifacts.EXPORTED_PROGRAM)).module()
    second_args = [torch.from_numpy(a) for a in second]
    try:
        got = run_module(exported, second_args)
    except Exception as exc:  # noqa: BLE001 - a guard torch.export put on a dimension, or worse
        shapes = ", ".join(str(list(a.shape)) for a in second)
        raise ConversionError(f"model.pt2 does not run at the second input shape {shapes}: {exc}") from None
    _same_shapes(got, run_module(model, second_args), output_names)
    if batch_dynamic:
        details["dynamic_batch_checked"] = [int(args[0].shape[0]), int(second[0].shape[0])]
    else:
        details["fixed_batch"] = int(first[0].shape[0]) if first[0].ndim else None
    save_module_outputs(exported, "exported", out, input_names, output_names)
    return details


def _same_shapes(exported: list[np.ndarray], native: list[np.ndarray], names: list[str]) -> None:
    """model.pt2 must give each output the shape model.py gives it on the second input set (its
    dynamic dimensions followed the inputs; an output that does not carry the batch keeps its own)."""
    for name, got, want in zip(names, exported, native, strict=False):
        if got.shape != want.shape:
            raise ConversionError(
                f"model.pt2 returned shape {list(got.shape)} for output '{name}' where model.py returns "
                f"{list(want.shape)} (second input shape)"
            )


def _export(model: torch.nn.Module, args: tuple, dynamic: list[dict[int, Any]]):
    """Named Dims first (axes with the same sizes share one); where torch.export finds a range they
    do not hold (its 0/1 specialisation, an int32 bound on positions), Dim.DYNAMIC, which lets it
    derive the ranges and the equalities from the code. A model.py it cannot take is an error: the
    stage was asked to export it."""
    automatic = [{axis: torch.export.Dim.DYNAMIC for axis in spec} for spec in dynamic]
    failures = []
    for kind, shapes in (("named", dynamic), ("automatic", automatic)):
        try:
            return torch.export.export(model, args, dynamic_shapes=tuple(shapes)), kind
        except Exception as exc:  # noqa: BLE001 - torch.export raises many types
            text = str(exc).strip()
            failures.append(f"{type(exc).__name__}: {text.splitlines()[0][:300] if text else ''}")
    raise ConversionError(
        f"torch.export cannot export model.py with its dynamic dimensions: {failures[-1]} "
        "(set `torch_export: false` to convert without model.pt2)",
        details={"tried": failures},
    )


def dynamic_dims(example: list[np.ndarray], second: list[np.ndarray]) -> list[dict[int, Any]]:
    """torch.export's dynamic_shapes: every axis whose size differs between the two input sets. Axes
    that take the same pair of sizes share one Dim (a token sequence and its mask must stay equal)."""
    dims: dict[tuple[int, int], Any] = {}
    result = []
    for a, b in zip(example, second, strict=True):
        spec = {}
        for axis, (x, y) in enumerate(zip(a.shape, b.shape, strict=True)):
            if x != y:
                name = "batch" if axis == 0 else f"dim{len(dims)}"
                spec[axis] = dims.setdefault((x, y), torch.export.Dim(name))
        result.append(spec)
    return result


def torch_compile(cfg: ModelConfig, fmt: str, out: Path, state: dict[str, Any]) -> dict[str, Any]:
    if "native_module" not in state:
        return {"skipped": _NO_NATIVE}
    started = time.perf_counter()
    compiled = torch.compile(state["native_module"])
    save_module_outputs(compiled, "compiled", out, state["input_names"], state["output_names"])
    return {"compile_seconds": round(time.perf_counter() - started, 3)}


def train_check(cfg: ModelConfig, fmt: str, out: Path, state: dict[str, Any]) -> dict[str, Any]:
    """20 SGD steps of the native model on random targets: the loss falls, every parameter learns."""
    if "native_module" not in state:
        return {"skipped": _NO_NATIVE}
    model = copy.deepcopy(state["native_module"]).train()
    input_names = state["input_names"]
    feeds = artifacts.load_arrays(out / artifacts.INPUTS)
    generator = torch.Generator().manual_seed(cfg.seed)
    args = [_training_batch(feeds[n], generator) for n in input_names]
    with torch.no_grad():
        targets = [torch.randn(o.shape, generator=generator, dtype=o.dtype) for o in _outputs(model, args)]
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ConversionError("train check: the model has no trainable parameters")
    optimizer = torch.optim.SGD(params, lr=cfg.train_check_lr)
    losses, missing = [], []
    for step in range(TRAIN_STEPS):
        optimizer.zero_grad()
        outputs = _outputs(model, args)
        loss = sum(torch.nn.functional.mse_loss(o, t) for o, t in zip(outputs, targets, strict=True))
        loss.backward()
        if step == 0:
            missing = [
                n
                for n, p in model.named_parameters()
                if p.requires_grad and (p.grad is None or not p.grad.any())
            ]
        optimizer.step()
        losses.append(float(loss))
    details = {
        "steps": TRAIN_STEPS,
        "optimizer": f"SGD(lr={cfg.train_check_lr:g})",
        "loss": "sum of MSE to random targets",
        "batch": int(args[0].shape[0]),
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "trainable_tensors": len(params),
        "frozen_tensors": [n for n, p in model.named_parameters() if not p.requires_grad],
    }
    if missing:
        raise ConversionError(f"train check: no gradient reached {', '.join(missing[:5])}")
    if not np.isfinite(losses).all() or losses[-1] >= losses[0]:
        raise ConversionError(f"train check: the loss did not fall ({losses[0]:.4g} -> {losses[-1]:.4g})")
    return details


def _training_batch(samples: np.ndarray, generator: torch.Generator, rows: int = TRAIN_BATCH) -> torch.Tensor:
    """`rows` distinct rows like the samples' (BatchNorm in training mode normalises over the batch:
    repeated rows would have zero variance and give gamma no gradient)."""
    seen = torch.from_numpy(np.ascontiguousarray(samples.reshape(-1, *samples.shape[2:])))
    if not seen.is_floating_point():
        picks = torch.randint(0, seen.numel(), (rows, *seen.shape[1:]), generator=generator)
        return seen.flatten()[picks]
    mean, std = seen.float().mean(), seen.float().std().clamp_min(1e-3)
    return (mean + std * torch.randn((rows, *seen.shape[1:]), generator=generator)).to(seen.dtype)


def _outputs(model: torch.nn.Module, args: list[torch.Tensor]) -> list[torch.Tensor]:
    result = model(*args)
    return list(result) if isinstance(result, (tuple, list)) else [result]
