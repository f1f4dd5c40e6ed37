"""Cache keys for batch runs: what a model's conversion result depends on, hashed.

A result is reused only if the model file (or SavedModel directory) has the same bytes, the resolved
config is the same, the framework versions are the same and this package's code is the same (its
source files are hashed, so an edit to a converter invalidates every cached result), and so are the
user's converter and custom-object files. Reads files
and package metadata only: no framework is imported.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from importlib import metadata
from pathlib import Path

from pipeline.config import USER_CODE_KEYS, ModelConfig

# Everything whose version can change a conversion result.
FRAMEWORK_PACKAGES = (
    "tensorflow-cpu",
    "tf-keras",
    "keras",
    "tf2onnx",
    "onnx",
    "onnxruntime",
    "onnx2torch",
    "torch",
    "torchvision",
    "numpy",
)
_PACKAGE_ROOT = Path(__file__).resolve().parent
_CHUNK = 1 << 20


def fingerprint(cfg: ModelConfig) -> str:
    payload = {
        "model": model_digest(cfg.model),
        "config": cfg.model_dump(mode="json"),
        "versions": framework_versions(),
        "code": code_digest(),
        # The user's own Python files change a result as much as ours do.
        "user_code": [model_digest(f) for key in USER_CODE_KEYS for f in getattr(cfg, key)],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def model_digest(model: str | None) -> str:
    """Hash of the model's bytes; a built-in zoo id has no file (its code is in code_digest)."""
    path = Path(model) if model else None
    if path is None or not path.exists():
        return f"id:{model}"
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode() + b"\0")
        with file.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


@cache
def framework_versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for package in FRAMEWORK_PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


@cache
def code_digest() -> str:
    digest = hashlib.sha256()
    for file in sorted(_PACKAGE_ROOT.rglob("*.py")):
        digest.update(str(file.relative_to(_PACKAGE_ROOT)).encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()
