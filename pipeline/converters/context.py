"""Converting a model with the project's converters and graph fixes, and what converters that
convert a subgraph (Loop) need to know about the model being converted: its opsets and IR version."""

from __future__ import annotations

import contextvars
import tempfile
from pathlib import Path

import onnx

_MODEL: contextvars.ContextVar[onnx.ModelProto] = contextvars.ContextVar("model")


def opset_imports() -> list[onnx.OperatorSetIdProto]:
    return list(_MODEL.get().opset_import)


def ir_version() -> int:
    return _MODEL.get().ir_version


def convert(model: onnx.ModelProto, attach_onnx_mapping: bool = False, data_dir: Path | None = None):
    """onnx2torch.convert with this project's converters registered and its graph fixes applied.
    With `attach_onnx_mapping`, each node's module carries the ONNX value names it reads and writes.
    `data_dir`: the model's tensors are external data in that directory (a model over 2 GB, loaded
    without them); the fixed graph is saved beside them and onnx2torch reads it from there."""
    from onnx2torch import convert as onnx2torch_convert

    from pipeline.converters import register
    from pipeline.converters.graph_fixes import route_graph_outputs
    from pipeline.converters.unsigned import widen_unsigned

    register()
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    route_graph_outputs(fixed.graph)
    widen_unsigned(fixed)
    token = _MODEL.set(fixed)
    try:
        if data_dir is None:
            return onnx2torch_convert(fixed, attach_onnx_mapping=attach_onnx_mapping)
        with tempfile.NamedTemporaryFile(dir=data_dir, prefix=".import-", suffix=".onnx") as staged:
            onnx.save(fixed, staged.name)  # the tensors' external references still name the data file
            return onnx2torch_convert(staged.name, attach_onnx_mapping=attach_onnx_mapping)
    finally:
        _MODEL.reset(token)
