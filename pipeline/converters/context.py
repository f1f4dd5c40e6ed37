"""Converting a model with the project's converters and graph fixes, and what converters that
convert a subgraph (Loop) need to know about the model being converted: its opsets and IR version."""

from __future__ import annotations

import contextvars

import onnx

_MODEL: contextvars.ContextVar[onnx.ModelProto] = contextvars.ContextVar("model")


def opset_imports() -> list[onnx.OperatorSetIdProto]:
    return list(_MODEL.get().opset_import)


def ir_version() -> int:
    return _MODEL.get().ir_version


def convert(model: onnx.ModelProto, attach_onnx_mapping: bool = False):
    """onnx2torch.convert with this project's converters registered and its graph fixes applied.
    With `attach_onnx_mapping`, each node's module carries the ONNX value names it reads and writes."""
    from onnx2torch import convert as onnx2torch_convert

    from pipeline.converters import register
    from pipeline.converters.graph_fixes import route_graph_outputs

    register()
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    route_graph_outputs(fixed.graph)
    token = _MODEL.set(fixed)
    try:
        return onnx2torch_convert(fixed, attach_onnx_mapping=attach_onnx_mapping)
    finally:
        _MODEL.reset(token)
