"""Import and build the user's hand-written module (`--torch path/to/module.py:ClassName`).

A module that fails to import or build is the user's bug, not ours: the error shows the line of the
user's file where it happened, the exception, and a hint for the classic slips (`nn.Conv2D` for
`nn.Conv2d`).
"""

from __future__ import annotations

import difflib
import importlib.util
import sys
import traceback
from pathlib import Path
from typing import Any

from pipeline.errors import UsageError


def parse_target(target: str) -> tuple[Path, str]:
    path, sep, class_name = target.rpartition(":")
    if not sep or not path or not class_name.isidentifier():
        raise UsageError(f"--torch expects path/to/module.py:ClassName, got '{target}'")
    return Path(path), class_name


def build(target: str, init_args: dict[str, Any]):
    """The user's module instance, in eval mode."""
    path, class_name = parse_target(target)
    if not path.is_file():
        raise UsageError(f"torch module file not found: {path}")
    name = f"tf2torch_port_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    folder = str(path.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)  # a port may import its sibling files (`from blocks import ...`)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise UsageError(f"{path} failed to import: {user_error(exc, path)}") from None
    cls = getattr(module, class_name, None)
    if cls is None:
        defined = [n for n, v in vars(module).items() if isinstance(v, type) and v.__module__ == name]
        raise UsageError(f"{path} defines no '{class_name}' (classes there: {', '.join(defined) or 'none'})")
    try:
        instance = cls(**init_args)
    except Exception as exc:
        raise UsageError(f"{class_name}(**{init_args}) failed: {user_error(exc, path)}") from None
    import torch

    if not isinstance(instance, torch.nn.Module):
        raise UsageError(f"{class_name} is a {type(instance).__name__}, not a torch.nn.Module")
    return instance.eval()


def user_error(exc: BaseException, path: Path) -> str:
    """'<file>:<line> in <function>: <source>' of the innermost frame in the user's file, the
    exception, and a hint when one is known."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if _same_file(f.filename, path)]
    where = ""
    if frames:
        frame = frames[-1]
        where = f"{path}:{frame.lineno} in {frame.name}: `{(frame.line or '').strip()}`\n  "
    message = f"{where}{type(exc).__name__}: {exc}"
    hint = _hint(exc)
    return message + (f"\n  hint: {hint}" if hint else "")


def _same_file(filename: str, path: Path) -> bool:
    try:
        return Path(filename).resolve() == path.resolve()
    except OSError:
        return False


def _hint(exc: BaseException) -> str | None:
    if isinstance(exc, AttributeError) and getattr(exc, "name", None):
        import torch.nn as nn

        target = getattr(exc, "obj", None)
        if target is nn or target is nn.functional:
            names = [n for n in dir(target) if not n.startswith("_")]
            close = difflib.get_close_matches(exc.name, names, n=1) or [
                n for n in names if n.lower() == exc.name.lower()
            ]
            if close:
                prefix = "nn" if target is nn else "F"
                return f"torch has no {prefix}.{exc.name}; did you mean {prefix}.{close[0]}?"
    return None
