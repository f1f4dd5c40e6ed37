"""File names of a run's artifacts and atomic writers. Numpy only.

Every writer goes through a temporary file in the same directory and `os.replace`, so a crash mid-write
never leaves a file that looks complete.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

INPUTS = "inputs.npz"
ONNX_MODEL = "model.onnx"
# A model.onnx whose tensors exceed `external_data_threshold_mb` keeps them in model.onnx.data.
ONNX_DATA_SUFFIX = ".data"
ONNX_DATA = ONNX_MODEL + ONNX_DATA_SUFFIX
TORCH_MODEL = "model.pt"
REPORT_JSON = "report.json"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
LOG_DIR = "logs"
# Outputs of each framework on inputs.npz, one array per output with a leading samples axis.
OUTPUTS = {
    "tf": "tf_outputs.npz",
    "onnx": "onnx_outputs.npz",
    "torch": "torch_outputs.npz",
    "native": "native_outputs.npz",  # model.py with model.safetensors
    "exported": "exported_outputs.npz",  # model.pt2 (torch.export)
    "compiled": "compiled_outputs.npz",  # torch.compile of the native model
    "port": "port_outputs.npz",  # a hand-written module with the TF weights (`verify`)
}
# The first sample at a second value of every dimension the TF model leaves unknown (batch, sequence
# length, image size; pipeline/common/inputs.py picks it), and the outputs of each form on it.
INPUTS_SECOND_SHAPE = "inputs_second_shape.npz"
SECOND_SHAPE_OUTPUTS = {
    "tf_second_shape": "tf_outputs_second_shape.npz",
    "native_second_shape": "native_outputs_second_shape.npz",
    "exported_second_shape": "exported_outputs_second_shape.npz",
}
# Gradients of the projected outputs with respect to each floating-point input (pipeline/common/gradients.py).
GRADIENTS = {"tf": "tf_gradients.npz", "torch": "torch_gradients.npz"}
# The training check (pipeline/torch_worker/training/): `loss` per step and `update:<parameter>` over the steps,
# TF's in torch's layout.
TRAINING = {"tf_training": "training_tf.npz", "torch_training": "training_torch.npz"}
# Every file a stage comparison reads, by the keys of the plan's comparisons (pipeline/plan.py).
COMPARED = {
    **OUTPUTS,
    **SECOND_SHAPE_OUTPUTS,
    **{f"{k}_gradients": v for k, v in GRADIENTS.items()},
    **TRAINING,
}
# Localisation: TF's intermediate values by ONNX value name, on the first input batch.
LOCALIZE_TF_VALUES = "localize/tf_values.npz"
# The Keras model's variables (by key) and its layers with their variables' names, trainability and
# keys: what the native passes use to name parameters after TF variables (pipeline/torch_worker/native/).
TF_WEIGHTS = "tf_weights.npz"
TF_LAYERS = "tf_layers.json"
DROPOUT_INPUTS = "dropout_inputs.npz"  # each Keras Dropout layer's input at sample 0 (native: nn.Dropout)
# each Keras layer with an activity regularizer: its output at sample 0 (native: where train.py reads it)
ACTIVITY_OUTPUTS = "activity_outputs.npz"
# The marked export (tf_worker/marked_export.py): the model exported with each trainable variable
# marked by a value of its own, and its TF_WEIGHTS, TF_LAYERS and DROPOUT_INPUTS, all in this folder.
MARKED_DIR = "marked"
MARKED_FILES = tuple(
    f"{MARKED_DIR}/{name}" for name in ("model.onnx", TF_WEIGHTS, DROPOUT_INPUTS, ACTIVITY_OUTPUTS)
)
# The native PyTorch model (pipeline/torch_worker/native/): its code, weights, TF variable map, torch.export program.
NATIVE_CODE = "model.py"
NATIVE_WEIGHTS = "model.safetensors"
WEIGHTS_MAP = "weights_map.json"
EXPORTED_PROGRAM = "model.pt2"
# `--training`: the Keras compile settings mapped onto PyTorch, and the training loop written from them;
# `--training-check N`: each step's batch, and TF's losses, variable changes and first-step gradients.
TRAINING_SETUP = "training_setup.json"
TRAIN_SCRIPT = "train.py"
TRAINING_BATCHES = "training_batches.npz"
TF_TRAINING = "tf_training_steps.npz"
# `verify` (pipeline/torch_worker/port/): each weighted Keras layer's input and output on the first batch, and the
# transfer's mapping table with its findings.
PORT_TF_VALUES = "tf_layer_values.npz"
PORT_MAPPING = "port_mapping.json"
# What `batch --prune` deletes once a model passed: the weight-sized files. Reports, inputs and
# outputs stay, so the summary, the cache and every comparison remain readable.
MODEL_FILES = (
    ONNX_MODEL,
    ONNX_DATA,
    TORCH_MODEL,
    NATIVE_WEIGHTS,
    EXPORTED_PROGRAM,
    TF_WEIGHTS,
    DROPOUT_INPUTS,
    ACTIVITY_OUTPUTS,
    LOCALIZE_TF_VALUES,
    TF_TRAINING,
    *MARKED_FILES,
)


def prune_model_files(out: Path) -> list[str]:
    """Delete the model files of a finished run in `out`; return the names deleted."""
    removed = []
    for name in MODEL_FILES:
        path = out / name
        if path.is_file():
            path.unlink()
            removed.append(name)
    return removed


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; artifacts get the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    # Read, not set-and-restore: os.umask() would change it for every thread of a batch meanwhile.
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


def save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    def write(tmp: Path) -> None:
        with tmp.open("wb") as fh:
            np.savez(fh, **arrays)

    write_atomic(path, write)


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def save_json(path: Path, payload: Any) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n"))


def save_text(path: Path, text: str) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(text))


def load_json(path: Path) -> Any:
    return json.loads(path.read_text())
