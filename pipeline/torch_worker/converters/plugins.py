"""User converters: Python files named in the config's `converters:` key, loaded for one conversion.

A file registers converters with onnx2torch's own `add_converter` for ops onnx2torch lacks, or with
`replace_converter` (below) to take the place of an existing one, for the same op type and opset
version. The registry is restored when the conversion ends, so in a batch one model's converters never
reach the next. Loading such a file runs its code: name only files you trust.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator, Sequence
from pathlib import Path

from pipeline.common.user_files import import_config_file

_loaded = itertools.count()


def replace_converter(operation_type: str, version: int, domain: str = ""):
    """Like onnx2torch's `add_converter`, but replaces a converter already registered for the op."""
    from onnx import defs
    from onnx2torch.node_converters.registry import _CONVERTER_REGISTRY, OperationDescription

    description = OperationDescription(
        domain=domain or defs.ONNX_DOMAIN, operation_type=operation_type, version=version
    )

    def register(converter):
        _CONVERTER_REGISTRY[description] = converter
        return converter

    return register


@contextlib.contextmanager
def user_converters(paths: Sequence[str]) -> Iterator[None]:
    from onnx2torch.node_converters.registry import _CONVERTER_REGISTRY

    from pipeline.torch_worker.converters import register
    from pipeline.torch_worker.converters.version_fallback import ALIASES, register_aliases

    register()  # the project's converters stay registered for good; only the user's are undone
    saved = dict(_CONVERTER_REGISTRY)
    try:
        if paths:
            # a user's converter for a version that only has an alias takes the alias's place
            for key in ALIASES:
                _CONVERTER_REGISTRY.pop(key, None)
            for path in paths:
                _load(Path(path))
            register_aliases()
        yield
    finally:
        _CONVERTER_REGISTRY.clear()
        _CONVERTER_REGISTRY.update(saved)


def _load(path: Path) -> None:
    import_config_file("converters", path, f"tf2torch_user_converters_{next(_loaded)}_{path.stem}")
