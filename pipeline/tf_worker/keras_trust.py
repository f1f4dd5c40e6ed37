"""What a Keras model file may run when it is loaded.

A Lambda layer stores its Python function in the file (Keras 3 as source, legacy .h5 as marshalled
bytecode), and loading the layer runs that code. Keras 3 refuses it in safe mode; legacy tf_keras loads
an .h5 file's Lambda without asking, so its layer config is read first (plain JSON, nothing run).
Both need `--trust-model`. Custom layer classes are never in the file: their code comes from the
user's own Python files (`custom_objects:` in the config), as onnx2torch converters do.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from pipeline.common.user_files import import_config_file
from pipeline.errors import ModelFileError

TRUST_HINT = "if you trust the file, pass --trust-model (config: trust_model: true)"


def lambda_refused(path: Path) -> ModelFileError:
    return ModelFileError(
        f"{path} has a Lambda layer, whose Python code would run when the model is loaded; it was not "
        f"loaded. {TRUST_HINT.capitalize()}"
    )


def is_lambda_refusal(exc: BaseException) -> bool:
    return "Lambda" in str(exc) and "safe_mode" in str(exc)


def unknown_class(path: Path, exc: BaseException) -> ModelFileError | None:
    """A clear error for a layer class Keras could not find, else None."""
    found = re.search(r"(?:Could not locate class|Unknown layer):? '?([A-Za-z_][\w.]*)'?", str(exc))
    if not found:
        return None
    return ModelFileError(
        f"{path} uses the custom class '{found.group(1)}', whose code is not in the file: put the class in "
        "a Python file and name that file in the config (custom_objects: [my_layers.py])"
    )


def check_h5_lambdas(path: Path) -> None:
    """Refuse an .h5 model with a Lambda layer before tf_keras runs its bytecode."""
    import h5py

    try:
        with h5py.File(path, "r") as fh:
            config = fh.attrs.get("model_config")
    except OSError as exc:
        raise ModelFileError(f"{path} is not a readable HDF5 file: {exc}") from None
    if config is None:
        return  # weights only: tf_keras will say so
    if isinstance(config, bytes):
        config = config.decode("utf-8", "replace")
    try:
        layers = list(_layer_classes(json.loads(config)))
    except ValueError:
        raise ModelFileError(f"{path}: its model_config is not valid JSON; is the file corrupt?") from None
    if "Lambda" in layers:
        raise lambda_refused(path)


def _layer_classes(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if "class_name" in node and "config" in node:
            yield node["class_name"]
        for value in node.values():
            yield from _layer_classes(value)
    elif isinstance(node, list):
        for value in node:
            yield from _layer_classes(value)


def custom_objects(files: Sequence[str]) -> dict[str, type]:
    """The classes defined in the user's files, by name (what Keras's `custom_objects` takes)."""
    found: dict[str, type] = {}
    for index, name in enumerate(files):
        module = import_config_file("custom_objects", Path(name), f"tf2torch_custom_objects_{index}")
        for attr, value in vars(module).items():
            if inspect.isclass(value) and value.__module__ == module.__name__:
                found[attr] = value
    return found
