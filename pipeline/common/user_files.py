"""The user's own Python files that a config names (`converters:`, `custom_objects:`,
`tflite_custom_ops:`), imported as modules. Either worker imports them; neither framework is imported
here."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from pipeline.errors import ConfigError


def import_config_file(key: str, path: Path, name: str) -> ModuleType:
    """Import `path` as the module `name` (kept in sys.modules: pickling and dataclasses look classes
    up by module name). A file that is missing or fails to import is the config's error, named by the
    key that lists it."""
    if not path.is_file():
        raise ConfigError(f"{key}: {path} is not a file")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{key}: {path} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise ConfigError(f"{key}: importing {path} failed: {type(exc).__name__}: {exc}") from None
    return module
