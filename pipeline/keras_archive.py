"""A `.keras` archive inspected before Keras opens it: plain `zipfile` and `json`, nothing decompressed
but config.json, no framework imported.

Refused, as a bad model file (exit 2), with a message that says why:
- a member whose name leaves the archive's root (`../x`, `/etc/x`, `C:\\x`): an archive no Keras
  version writes, and one an extracting reader would write outside its folder;
- a member whose declared uncompressed size is absurd for the archive (a zip bomb: gigabytes of
  zeros in a few megabytes), judged from the central directory alone;
- a config.json that names a class (or function) from a module outside Keras that is not defined in
  one of the user's `custom_objects` files: loading it would import and call that module's code
  (`"module": "os"`). Entries without a module (registered names) are resolved by Keras from its
  registry and `custom_objects` only, so they pass.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from pipeline.errors import ModelFileError

CONFIG = "config.json"
# Modules a .keras config may name: Keras itself and its own model libraries.
KERAS_MODULES = ("keras", "keras_hub", "keras_nlp", "keras_cv", "tf_keras")
# A member may declare this much before its compression ratio is looked at; past it, a ratio above
# RATIO is refused. Real weights compress about 1.1:1 and configs about 10:1; a zero-filled bomb
# about 1000:1.
LARGE_MEMBER = 256 * 2**20
RATIO = 200
CONFIG_LIMIT = 64 * 2**20  # config.json is read whole: a larger one is not a model's config


def inspect(path: Path, custom: set[str] | frozenset[str] = frozenset()) -> None:
    """Raise ModelFileError if the archive at `path` is unsafe to hand to Keras (see the module doc).
    `custom`: the names of the classes the user's custom_objects files define."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            for member in members:
                _check_member(path, member)
            config = _read_config(path, archive)
    except zipfile.BadZipFile as exc:
        raise ModelFileError(
            f"{path} is not a complete .keras archive ({exc}); is it truncated or corrupt?"
        ) from None
    except OSError as exc:
        raise ModelFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    for module, name in _named_objects(config):
        if module is None or _is_keras(module) or name in custom:
            continue
        raise ModelFileError(
            f"{path}: config.json names '{name}' from the module '{module}', which is not part of Keras "
            "nor defined in a custom_objects file: refused as unsafe (loading it would import and run "
            "that module's code). A .keras file you trust with your own classes: put them in a Python "
            "file and list it in the config's custom_objects"
        )


def _check_member(path: Path, member: zipfile.ZipInfo) -> None:
    name = member.filename
    posix, windows = PurePosixPath(name), PureWindowsPath(name)
    if (
        posix.is_absolute()
        or windows.is_absolute()
        or windows.drive
        or ".." in posix.parts
        or ".." in windows.parts
    ):
        raise ModelFileError(
            f"{path}: the archive member '{name}' lies outside the archive's root: refused (no Keras "
            "version writes such a name)"
        )
    declared, stored = member.file_size, max(member.compress_size, 1)
    if declared > LARGE_MEMBER and declared / stored > RATIO:
        raise ModelFileError(
            f"{path}: the archive member '{name}' declares {declared / 2**30:.1f} GiB from "
            f"{member.compress_size / 2**20:.1f} MiB ({declared // stored}:1): refused as a zip bomb, "
            "nothing was decompressed"
        )


def _read_config(path: Path, archive: zipfile.ZipFile) -> Any:
    try:
        info = archive.getinfo(CONFIG)
    except KeyError:
        raise ModelFileError(
            f"{path} is not a complete .keras archive (it has no {CONFIG}); is it truncated or corrupt?"
        ) from None
    if info.file_size > CONFIG_LIMIT:
        raise ModelFileError(
            f"{path}: its {CONFIG} declares {info.file_size} bytes; refused as not a model config"
        )
    try:
        return json.loads(archive.read(info))
    except ValueError as exc:
        raise ModelFileError(
            f"{path}: its {CONFIG} is not valid JSON ({exc}); is the file corrupt?"
        ) from None


def _is_keras(module: str) -> bool:
    return module.split(".", 1)[0] in KERAS_MODULES


def _named_objects(config: Any) -> Iterator[tuple[str | None, str]]:
    """(module, name) of every serialized object in a Keras 3 config: layers, initializers,
    functions (`class_name: "function"`, the function's name in `config`), ..."""
    stack = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "class_name" in node and "module" in node:
                name = node["class_name"]
                if name == "function" and isinstance(node.get("config"), str):
                    name = node["config"]
                module = node["module"]
                yield (module if isinstance(module, str) else None), str(name)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
