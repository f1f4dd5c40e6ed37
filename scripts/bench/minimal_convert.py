"""The four conversion steps with the same libraries and nothing else: the baseline that
`scripts/bench/run.py` times `tf2torch convert` against.

    python scripts/bench/minimal_convert.py MODEL.keras OUT_DIR

Two processes, as the pipeline needs too (torch cannot be imported after TensorFlow): this parent
starts `tf` (Keras load, reference outputs, model.export, tf2onnx) and then `torch` (onnxruntime run,
onnx2torch import, run, one np.allclose per output). No config, validation reports, statistics,
report files or native passes. Exits 1 when an output does not match.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def tf_step(model_path: str, out: Path) -> None:
    import keras
    import tensorflow as tf
    import tf2onnx
    from tf2onnx import tf_loader

    model = keras.saving.load_model(model_path, compile=False)
    rng = np.random.default_rng(0)
    shape = [2 if d is None else d for d in model.inputs[0].shape]
    x = rng.random(shape, dtype=np.float32)
    np.save(out / "x.npy", x)
    np.save(out / "tf.npy", np.asarray(model(x, training=False)))
    with tempfile.TemporaryDirectory() as tmp:
        model.export(tmp)
        graph_def, inputs, outputs = tf_loader.from_saved_model(
            tmp, None, None, signatures=["serving_default"]
        )
    with tf.device("/cpu:0"):
        proto, _ = tf2onnx.convert.from_graph_def(
            graph_def, input_names=inputs, output_names=outputs, opset=17
        )
    (out / "model.onnx").write_bytes(proto.SerializeToString())


def torch_step(out: Path) -> None:
    import onnx
    import onnx2torch
    import onnxruntime
    import torch

    x = np.load(out / "x.npy")
    reference = np.load(out / "tf.npy")
    session = onnxruntime.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    module = onnx2torch.convert(onnx.load(str(out / "model.onnx"))).eval()
    with torch.no_grad():
        converted = module(torch.from_numpy(x)).numpy()
    ok = np.allclose(reference, got, atol=1e-4) and np.allclose(got, converted, atol=1e-4)
    if not ok:
        sys.exit("outputs differ")


def main(argv: list[str]) -> int:
    if argv[:1] == ["tf"]:
        tf_step(argv[1], Path(argv[2]))
        return 0
    if argv[:1] == ["torch"]:
        torch_step(Path(argv[1]))
        return 0
    if len(argv) != 2:
        print(__doc__)
        return 2
    model, out = argv
    Path(out).mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    for step in (["tf", model, out], ["torch", out]):
        done = subprocess.run([sys.executable, __file__, *step], env=env, stdout=subprocess.DEVNULL)
        if done.returncode:
            return done.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
