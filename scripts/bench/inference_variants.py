"""Ways to run a converted model for CPU inference, side by side with onnxruntime, on one batch size.

    python scripts/bench/inference_variants.py RUN_DIR BATCH [REPEATS] [--profile]

RUN_DIR is a `tf2torch convert` output (layout nhwc). Variants: model.py as written (`native`), with
BatchNorm folded and channels-last memory (`fused_cl`, latency.py's `inference`), that traced and
frozen by TorchScript (`jit_frozen`), TorchScript's optimize_for_inference (oneDNN layouts, Conv+ReLU
fusion; `jit_ofi`), and onnxruntime. Prints each one's largest difference from `native` and the median
milliseconds, interleaved call by call. --profile adds torch's operator profile of `fused_cl`.
Run it with and without the MALLOC_* variables of docs/performance.md to see the allocator's share.
"""

from __future__ import annotations

import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np


def main(argv: list[str]) -> int:
    args = [a for a in argv if not a.startswith("--")]
    if len(args) not in (2, 3):
        print(__doc__)
        return 2
    import onnxruntime as ort
    import torch
    import torch.fx.experimental.optimization as fx_optimization

    from pipeline.torch_worker.native_stage import load_native

    warnings.simplefilter("ignore")
    run, batch = Path(args[0]), int(args[1])
    repeats = int(args[2]) if len(args) == 3 else 10
    with np.load(run / "inputs.npz") as arrays:
        sample = arrays[arrays.files[0]][0]
    x = np.ascontiguousarray(np.resize(sample, (batch, *sample.shape[1:])))
    tx = torch.from_numpy(x)

    def fresh():
        return load_native(run, "ConvertedModel").eval()

    def fused_cl():
        return fx_optimization.fuse(fresh()).to(memory_format=torch.channels_last)

    with torch.no_grad():
        variants = {"native": fresh(), "fused_cl": fused_cl()}
        variants["jit_frozen"] = torch.jit.freeze(torch.jit.trace(fused_cl(), tx))
        variants["jit_ofi"] = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(fresh(), tx)))
        runners = {name: (lambda m=m: m(tx)) for name, m in variants.items()}
        options = ort.SessionOptions()
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(str(run / "model.onnx"), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        runners["onnxruntime"] = lambda: session.run(None, {name: x})[0]
        reference = _first(runners["native"]())
        for key, call in runners.items():
            print(f"{key:12s} max |diff| from native {float((_first(call()) - reference).abs().max()):.2e}")
        times: dict[str, list[float]] = {k: [] for k in runners}
        for i in range(3 + repeats):
            for key, call in runners.items():
                started = time.perf_counter()
                call()
                if i >= 3:
                    times[key].append(time.perf_counter() - started)
        print(
            f"batch {batch}, median ms:", {k: round(statistics.median(v) * 1e3, 2) for k, v in times.items()}
        )
        if "--profile" in argv:
            with torch.profiler.profile() as profile:
                for _ in range(3):
                    runners["fused_cl"]()
            print(profile.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
    return 0


def _first(output):
    import torch

    output = output[0] if isinstance(output, list | tuple) else output
    return torch.as_tensor(output)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
