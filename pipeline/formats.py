"""Decide which loader reads a model, from its path and first bytes. No framework imports."""

from __future__ import annotations

from pathlib import Path

from pipeline.errors import ModelFileError

ZOO_PREFIXES = ("demo.", "family.", "tflite_app.", "keras.applications.", "keras_hub.", "kecam.")

# Zoo ids whose models come from a Keras 2 (tf_keras) library: `tf.keras` must be tf_keras in the
# worker that builds them (pipeline/tf_worker/kecam.py).
KERAS2_ZOO_PREFIXES = ("kecam.",)

_EXTENSIONS = {".keras": "keras", ".h5": "h5", ".hdf5": "h5", ".pb": "frozen_graph", ".tflite": "tflite"}
_MAGIC = {"keras": (0, b"PK"), "h5": (0, b"\x89HDF"), "tflite": (4, b"TFL3")}


def is_zoo_id(model: str) -> bool:
    return model.startswith(ZOO_PREFIXES) and not Path(model).exists()


def needs_keras2(fmt: str, model: str) -> bool:
    """Whether the TF worker must run with `tf.keras` bound to tf_keras (Keras 2): legacy .h5 files,
    whose custom layers (the user's `custom_objects` files, a library's registered layers) are
    written against `tf.keras`, and zoo ids built by a Keras 2 library. TensorFlow binds `tf.keras`
    once per process, on first use, from TF_USE_LEGACY_KERAS: such models get a worker of their own."""
    return fmt == "h5" or (fmt == "zoo" and model.startswith(KERAS2_ZOO_PREFIXES))


def detect_format(model: str, declared: str = "auto") -> str:
    """Return the format of `model`, checking that a declared format fits what is on disk."""
    if declared == "zoo" or (declared == "auto" and is_zoo_id(model)):
        return "zoo"
    path = Path(model)
    if not path.exists():
        raise ModelFileError(
            f"model not found: {model} (give a path to a .keras, .h5, .pb, .tflite file or a SavedModel "
            f"directory, or a zoo id such as demo.cnn, tflite_app.face_landmarks or keras.applications.MobileNetV2)"
        )
    if path.is_dir():
        if (path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file():
            found = "saved_model"
        else:
            raise ModelFileError(f"{model} is a directory but not a SavedModel (it has no saved_model.pb)")
    else:
        if path.stat().st_size == 0:
            raise ModelFileError(f"{model} is an empty file")
        found = _EXTENSIONS.get(path.suffix.lower())
        if found is None and declared == "auto":
            raise ModelFileError(
                f"cannot tell the format of {model} from its extension; use one of "
                f"{', '.join(sorted(_EXTENSIONS))} or set `format:` in the config"
            )
        found = found or declared
        _check_magic(path, found)
    if declared not in ("auto", found):
        raise ModelFileError(f"config says format '{declared}' but {model} looks like '{found}'")
    return found


def _check_magic(path: Path, fmt: str) -> None:
    with path.open("rb") as fh:
        head = fh.read(16)
    content = next((f for f, (offset, magic) in _MAGIC.items() if head[offset:].startswith(magic)), None)
    if content is not None and content != fmt:
        suffix = next(e for e, f in _EXTENSIONS.items() if f == content)
        raise ModelFileError(
            f"{path} is named as a {fmt} file but its content is a {content} file: rename it to {suffix} "
            f"or set `format: {content}` in the config"
        )
    if fmt in _MAGIC and content != fmt:
        raise ModelFileError(
            f"{path} does not look like a {fmt} file (its first bytes do not match); is it corrupt?"
        )
