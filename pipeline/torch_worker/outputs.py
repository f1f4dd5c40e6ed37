"""Running a torch module on the run's inputs: one place for the import, native and export stages."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from pipeline import artifacts
from pipeline.common.inputs import run_samples
from pipeline.errors import ConversionError


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
    """Runs `module` on every sample of inputs.npz and writes artifacts.OUTPUTS[key]; where the TF
    model has unknown dimensions, also on inputs_second_shape.npz into the `<key>_second_shape` file."""
    _save_outputs(module, out / artifacts.INPUTS, out / artifacts.OUTPUTS[key], input_names, output_names)
    second = artifacts.SECOND_SHAPE_OUTPUTS.get(f"{key}_second_shape")
    if second is not None:
        (out / second).unlink(missing_ok=True)
        if (out / artifacts.INPUTS_SECOND_SHAPE).is_file():
            try:
                _save_outputs(
                    module, out / artifacts.INPUTS_SECOND_SHAPE, out / second, input_names, output_names
                )
            except Exception as exc:  # a size fixed in the code although TF's model leaves it open
                shapes = {
                    n: list(a.shape[1:])
                    for n, a in artifacts.load_arrays(out / artifacts.INPUTS_SECOND_SHAPE).items()
                }
                raise ConversionError(
                    f"the {key} model fails at the second input shape {shapes}, which TF's model accepts "
                    f"({type(exc).__name__}: {str(exc).strip()[:200]})"
                ) from exc


def _save_outputs(module, inputs_path: Path, outputs_path: Path, input_names, output_names) -> None:
    feeds = artifacts.load_arrays(inputs_path)

    def run(feed):
        # np.asarray keeps a 0-d input 0-d (np.ascontiguousarray makes it 1-d)
        results = run_module(module, [torch.from_numpy(np.asarray(feed[n], order="C")) for n in input_names])
        if len(results) != len(output_names):
            raise ConversionError(
                f"the torch module returned {len(results)} outputs, the ONNX model has {len(output_names)}"
            )
        return dict(zip(output_names, results, strict=True))

    artifacts.save_arrays(outputs_path, run_samples(run, feeds, output_names))


def second_input_set(out: Path, input_names: list[str]) -> tuple[list[np.ndarray], bool]:
    """The inputs later stages check dynamic dimensions on, and whether the batch is one of them: the
    load stage's second-shape sample, or, where TF fixes every dimension (a .tflite app's batch of 1)
    or runs at no other shape, the last sample of inputs.npz: a second input set, not a second size."""
    second = second_shape_inputs(out, input_names)
    feeds = artifacts.load_arrays(out / artifacts.INPUTS)
    first = [np.asarray(feeds[n][0], order="C") for n in input_names]
    if second is None:
        return [np.asarray(feeds[n][-1], order="C") for n in input_names], False
    batch_dynamic = any(a.ndim and b.shape[0] != a.shape[0] for a, b in zip(first, second, strict=True))
    return second, batch_dynamic


def second_shape_inputs(out: Path, input_names: list[str]) -> list[np.ndarray] | None:
    """The second-shape sample (every unknown dimension at another value) when the model has one."""
    path = out / artifacts.INPUTS_SECOND_SHAPE
    if not path.is_file():
        return None
    feeds = artifacts.load_arrays(path)
    return [np.asarray(feeds[n][0], order="C") for n in input_names]
