"""Inference latency of one converted model, batch 1 and 32 on CPU, in one framework's process.

    python scripts/bench/latency.py torch RUN_DIR MODEL.keras   # onnx2torch, native, inference, compiled, onnxruntime
    python scripts/bench/latency.py tf RUN_DIR MODEL.keras      # the original Keras model (tf.function)
    python scripts/bench/latency.py torchvision RUN_DIR NAME    # model.py against torchvision's NAME, 1 thread
    python scripts/bench/latency.py keras_torch RUN_DIR MODEL.keras  # model.py against Keras 3 on torch, 1 thread

RUN_DIR is a `tf2torch convert` output (layout nhwc). Inputs: the first sample of RUN_DIR/inputs.npz
repeated to the batch size. Per cell the median of REPEATS calls after WARMUP calls; the torch-side
runtimes are interleaved call by call so that machine noise hits them alike. Prints one JSON line.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

WARMUP, REPEATS, BATCHES = 3, 15, (1, 32)
TORCHVISION_REPEATS = 61


def batches(run: Path) -> dict[int, np.ndarray]:
    with np.load(run / "inputs.npz") as arrays:
        sample = arrays[arrays.files[0]][0]
    return {b: np.ascontiguousarray(np.resize(sample, (b, *sample.shape[1:]))) for b in BATCHES}


def timings(runners: dict, repeats: int = REPEATS) -> dict[str, float]:
    times: dict[str, list[float]] = {k: [] for k in runners}
    for i in range(WARMUP + repeats):
        for key, call in runners.items():
            started = time.perf_counter()
            call()
            if i >= WARMUP:
                times[key].append(time.perf_counter() - started)
    return {k: statistics.median(v) * 1e3 for k, v in times.items()}


def torch_side(run: Path) -> dict[str, float]:
    import onnxruntime as ort
    import torch
    import torch.fx.experimental.optimization

    from pipeline.torch_worker.native_stage import load_native

    warnings.simplefilter("ignore")
    raw = torch.load(str(run / "model.pt"), weights_only=False).eval()
    native = load_native(run, "ConvertedModel")
    inference = inference_ready(load_native(run, "ConvertedModel"))
    # Inductor's freezing treats the weights as constants (inference only): it folds BatchNorm into the
    # convolutions and fuses their activations, as onnxruntime does.
    torch._inductor.config.freezing = True
    # One compilation per batch size (dynamic=False): a second size would otherwise be recompiled with
    # symbolic shapes and lose much of what freezing gains.
    compiled = torch.compile(load_native(run, "ConvertedModel"), dynamic=False)
    options = ort.SessionOptions()
    # onnxruntime's threads spin after each run by default and would steal the cores from the torch
    # call timed next; without spinning the interleaved timings measure each runtime alone.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(run / "model.onnx"), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    figures = {}
    with torch.no_grad():
        for batch, x in batches(run).items():
            tx = torch.from_numpy(x)
            ms = timings(
                {
                    "onnx2torch": lambda tx=tx: raw(tx),
                    "native": lambda tx=tx: native(tx),
                    "inference": lambda tx=tx: inference(tx),
                    "compiled": lambda tx=tx: compiled(tx),
                    "onnxruntime": lambda x=x: session.run(None, {name: x}),
                }
            )
            figures.update({f"{k}_b{batch}_ms": v for k, v in ms.items()})
    return figures


def inference_ready(model):
    """The usual PyTorch recipe for CPU inference, two lines on the user's side: Conv+BatchNorm folded
    (model.py keeps them apart so that BatchNorm stays trainable) and, for models with convolutions,
    channels-last memory, which oneDNN's convolutions prefer."""
    import torch
    import torch.fx.experimental.optimization

    fused = torch.fx.experimental.optimization.fuse(model)
    if any(isinstance(m, torch.nn.Conv2d) for m in fused.modules()):
        fused = fused.to(memory_format=torch.channels_last)
    return fused


def tf_side(run: Path, model_path: str) -> dict[str, float]:
    import keras
    import tensorflow as tf

    model = keras.saving.load_model(model_path, compile=False)
    call = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    figures = {}
    for batch, x in batches(run).items():
        tensor = tf.constant(x)
        ms = timings({"tf": lambda tensor=tensor: call(tensor).numpy()})
        figures[f"tf_b{batch}_ms"] = ms["tf"]
    return figures


def side_by_side(run: Path, name: str, contender, nchw: bool) -> dict[str, float]:
    """model.py against `contender` (a callable on one batch), one thread, batch 1 and 8, interleaved
    call by call, on the run's first input sample. model.py takes the NHWC input TF takes; the
    contender NCHW when `nchw`."""
    import torch

    from pipeline.torch_worker.native_stage import load_native

    torch.set_num_threads(1)
    native = load_native(run, "ConvertedModel")
    with np.load(run / "inputs.npz") as arrays:
        sample = arrays[arrays.files[0]][0]
    figures = {}
    with torch.no_grad():
        for batch in (1, 8):
            nhwc = torch.from_numpy(np.ascontiguousarray(np.resize(sample, (batch, *sample.shape[1:]))))
            theirs = nhwc.permute(0, 3, 1, 2).contiguous() if nchw else nhwc
            # A batch-1 call takes 0.1-70 ms, where one noisy call moves a median of 15: take more.
            repeats = TORCHVISION_REPEATS if batch == 1 else REPEATS
            ms = timings({"model_py": lambda x=nhwc: native(x), name: lambda x=theirs: contender(x)}, repeats)
            figures.update({f"{k}_b{batch}_ms": v for k, v in ms.items()})
    return figures


def torchvision_side(run: Path, name: str) -> dict[str, float]:
    """model.py against torchvision's hand-written model of the same architecture (random weights,
    eval mode); torchvision takes NCHW, from the same values."""
    import torchvision

    warnings.simplefilter("ignore")
    reference = getattr(torchvision.models, name)(weights=None).eval()
    return side_by_side(run, "torchvision", reference, nchw=True)


def keras_torch_side(run: Path, model_path: str) -> dict[str, float]:
    """model.py against the same .keras file loaded by Keras 3 on its torch backend (the model is a
    torch.nn.Module there, still run by Keras); both take the NHWC input TF takes."""
    import os

    os.environ["KERAS_BACKEND"] = "torch"  # before keras is imported; this process has no TensorFlow
    import keras

    warnings.simplefilter("ignore")
    assert keras.backend.backend() == "torch" and "tensorflow" not in sys.modules
    on_torch = keras.saving.load_model(model_path, compile=False)
    return side_by_side(run, "keras_torch", lambda x: on_torch(x, training=False), nchw=False)


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in ("torch", "tf", "torchvision", "keras_torch"):
        print(__doc__)
        return 2
    framework, run, model = argv
    if framework == "torchvision":
        figures = torchvision_side(Path(run), model)
    elif framework == "keras_torch":
        figures = keras_torch_side(Path(run), model)
    else:
        figures = torch_side(Path(run)) if framework == "torch" else tf_side(Path(run), model)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
