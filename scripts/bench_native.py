"""Inference latency of a converted model before and after the native passes, beside onnxruntime.

    .venv/bin/python scripts/bench_native.py RUN_DIR [RUN_DIR ...]   (make bench-native)

Each RUN_DIR is the output of `tf2torch convert` (model.onnx, model.pt, model.py, model.safetensors).
Batch 1 and 32 on CPU, inputs shaped like inputs.npz; per cell the median of REPEATS timed calls after
WARMUP calls, the three runtimes interleaved call by call so that machine noise hits them alike.
Prints a Markdown table; figures, not a test.
"""

from __future__ import annotations

import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from pipeline import artifacts
from pipeline.stages.native_stage import load_native
from pipeline.stages.torch_stages import onnxruntime_session

WARMUP, REPEATS = 3, 15


def bench(run: Path) -> list[str]:
    warnings.simplefilter("ignore")
    raw = torch.load(str(run / artifacts.TORCH_MODEL), weights_only=False).eval()
    native = load_native(run, "ConvertedModel")
    session = onnxruntime_session(str(run / artifacts.ONNX_MODEL))
    name = session.get_inputs()[0].name
    sample = artifacts.load_arrays(run / artifacts.INPUTS)[name][0]
    rows = []
    for batch in (1, 32):
        x = np.ascontiguousarray(np.resize(sample, (batch, *sample.shape[1:])))
        tx = torch.from_numpy(x)
        runners = {
            "onnx2torch": lambda tx=tx: raw(tx),
            "native": lambda tx=tx: native(tx),
            "onnxruntime": lambda x=x: session.run(None, {name: x}),
        }
        times: dict[str, list[float]] = {k: [] for k in runners}
        with torch.no_grad():
            for i in range(WARMUP + REPEATS):
                for key, call in runners.items():
                    started = time.perf_counter()
                    call()
                    if i >= WARMUP:
                        times[key].append(time.perf_counter() - started)
        ms = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        rows.append(
            f"| {run.name} | {batch} | {ms['onnx2torch']:.2f} | {ms['native']:.2f} | {ms['onnxruntime']:.2f} "
            f"| {ms['onnx2torch'] / ms['native']:.2f}x | {ms['native'] / ms['onnxruntime']:.2f}x |"
        )
    return rows


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    torch.set_num_threads(torch.get_num_threads())
    print(
        f"torch threads: {torch.get_num_threads()}; median of {REPEATS} calls after {WARMUP} warm-up calls\n"
    )
    print(
        "| model | batch | onnx2torch ms | native ms | onnxruntime ms | native speed-up | native / onnxruntime |"
    )
    print("|---|---|---|---|---|---|---|")
    for run in argv:
        for row in bench(Path(run)):
            print(row, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
