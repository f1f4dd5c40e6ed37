"""Running a torch module on the run's inputs: one place for the import, native and export stages."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from pipeline import artifacts
from pipeline.errors import ConversionError
from pipeline.inputs import run_samples


def run_module(module: torch.nn.Module, args: list[torch.Tensor]) -> list[np.ndarray]:
    """The module's outputs as arrays, a single output as a list of one."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = module(*args)
    results = result if isinstance(result, (tuple, list)) else (result,)
    return [r.detach().cpu().numpy() for r in results]


def save_module_outputs(
    module: torch.nn.Module, key: str, out: Path, input_names: list[str], output_names: list[str]
) -> None:
    """Runs `module` on every sample of inputs.npz and writes artifacts.OUTPUTS[key]."""
    feeds = artifacts.load_arrays(out / artifacts.INPUTS)

    def run(feed):
        # np.asarray keeps a 0-d input 0-d (np.ascontiguousarray makes it 1-d)
        results = run_module(module, [torch.from_numpy(np.asarray(feed[n], order="C")) for n in input_names])
        if len(results) != len(output_names):
            raise ConversionError(
                f"the torch module returned {len(results)} outputs, the ONNX model has {len(output_names)}"
            )
        return dict(zip(output_names, results, strict=True))

    artifacts.save_arrays(out / artifacts.OUTPUTS[key], run_samples(run, feeds, output_names))
