"""Gradient parity, TF worker: d(sum of projected outputs)/d(inputs) with TensorFlow's autodiff."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pipeline import artifacts
from pipeline.common.gradients import differentiable, projection
from pipeline.config import ModelConfig
from pipeline.errors import first_line
from pipeline.tf_worker import layout


def tf_gradients(cfg: ModelConfig, fmt: str, out: Path, state: dict[str, Any]) -> dict[str, Any]:
    model = state["model"]
    feeds = layout.to_tf(artifacts.load_arrays(out / artifacts.INPUTS), cfg.layout)
    taken, left = differentiable({n: v[0] for n, v in feeds.items()})
    if getattr(model, "input_gradients", None) is None:
        return {"skipped": "TFLite models cannot be differentiated in TensorFlow"}
    if not taken:
        return {"skipped": "no floating-point input to differentiate with respect to", "inputs_left": left}

    def project(name, shape):
        return projection(name, shape, cfg.seed)

    per_sample = []
    try:
        for i in range(len(next(iter(feeds.values())))):
            per_sample.append(model.input_gradients({n: v[i] for n, v in feeds.items()}, taken, project))
    except Exception as exc:  # noqa: BLE001 - an op without a gradient; the conversion itself is fine
        return {
            "skipped": f"TensorFlow could not differentiate the model: {type(exc).__name__}: {first_line(exc)}"
        }
    gradients = {n: np.stack([g[n] for g in per_sample]) for n in taken}
    artifacts.save_arrays(out / artifacts.GRADIENTS["tf"], layout.to_artifacts(gradients, cfg.layout))
    return {"inputs": taken, "inputs_left": left}
