"""Gradient parity, torch worker: the same projected-output gradients with torch's autograd, on the
module the import stage produced."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import artifacts
from pipeline.common.gradients import projection
from pipeline.config import ModelConfig


def torch_gradients(cfg: ModelConfig, fmt: str, out: Path, state: dict[str, Any]) -> dict[str, Any]:
    import torch

    tf_file = out / artifacts.GRADIENTS["tf"]
    if not tf_file.exists():
        return {"skipped": "TensorFlow computed no gradients (see the tf_gradients stage)"}
    names = list(artifacts.load_arrays(tf_file))
    module, input_names, output_names = state["torch_module"], state["input_names"], state["output_names"]
    feeds = artifacts.load_arrays(out / artifacts.INPUTS)
    per_sample: list[dict[str, np.ndarray]] = []
    unreached: set[str] = set()
    for i in range(len(next(iter(feeds.values())))):
        args = {n: torch.from_numpy(np.asarray(feeds[n][i], order="C")) for n in input_names}
        for name in names:
            args[name].requires_grad_(True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = module(*[args[n] for n in input_names])
        results = result if isinstance(result, (tuple, list)) else (result,)
        total = torch.zeros((), dtype=torch.float64)
        for name, value in zip(output_names, results, strict=True):
            if value.is_floating_point():
                direction = torch.from_numpy(projection(name, tuple(value.shape), cfg.seed))
                total = total + (value.to(torch.float64) * direction).sum()
        if total.requires_grad:
            grads = torch.autograd.grad(total, [args[n] for n in names], allow_unused=True)
        else:  # nothing in the module carries a gradient back to the inputs
            grads = (None,) * len(names)
        unreached |= {n for n, g in zip(names, grads, strict=True) if g is None}
        per_sample.append(
            {
                n: np.zeros_like(feeds[n][i]) if g is None else g.detach().numpy()
                for n, g in zip(names, grads, strict=True)
            }
        )
    artifacts.save_arrays(
        out / artifacts.GRADIENTS["torch"], {n: np.stack([g[n] for g in per_sample]) for n in names}
    )
    # An input no gradient reaches gets zeros, which a comparison with TF's gradients then judges.
    return {"inputs": names, "no_gradient_path": sorted(unreached)}
