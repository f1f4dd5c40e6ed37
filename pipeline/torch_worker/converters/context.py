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

    from pipeline.torch_worker.converters import register
    from pipeline.torch_worker.converters.graph_fixes import rename_keyword_nodes, route_graph_outputs
    from pipeline.torch_worker.converters.unsigned import widen_unsigned

    register()
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    route_graph_outputs(fixed.graph)
    rename_keyword_nodes(fixed.graph)
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


def unconvertible_nodes(model: onnx.ModelProto) -> dict[str, int]:
    """Every node of the top graph whose converter declines it (or crashes on it), counted per op and
    reason: called once a conversion failed, so the error lists them all rather than the first one
    onnx2torch met, and a converter's KeyError reaches the user as the node it failed on."""
    from collections import Counter

    from onnx2torch.node_converters.registry import get_converter
    from onnx2torch.onnx_graph import OnnxGraph
    from onnx2torch.utils.safe_shape_inference import safe_shape_inference

    from pipeline.torch_worker.converters.unsigned import widen_unsigned

    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    widen_unsigned(fixed)
    inferred = safe_shape_inference(fixed)
    opsets = {o.domain: o.version for o in inferred.opset_import}
    graph = OnnxGraph(inferred.graph)
    found: Counter = Counter()
    token = _MODEL.set(fixed)
    try:
        for node in graph.nodes.values():
            version = opsets.get(node.domain, 1)
            try:
                get_converter(node.operation_type, version, node.domain)(node, graph)
            except NotImplementedError as exc:
                reason = str(exc).split(": ", 1)[-1] if "node '" in str(exc) else str(exc)
                found[f"{node.operation_type} (opset {version}): {reason.strip()[:200]}"] += 1
            except Exception as exc:  # noqa: BLE001 - a converter that crashes cannot convert the node either
                message = str(exc).strip().splitlines()
                reason = f"the converter failed ({type(exc).__name__}: {message[0][:160] if message else ''})"
                found[f"{node.operation_type} (opset {version}): {reason}"] += 1
    finally:
        _MODEL.reset(token)
    return dict(found)
