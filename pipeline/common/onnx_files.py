"""Saving model.onnx, with its weights in model.onnx.data when they are large.

Protobuf cannot serialise a message over 2 GB, so an ONNX model whose tensors exceed
`external_data_threshold_mb` (config; default 1800) is written with ONNX external data: the graph in
model.onnx, every tensor over 1 KB in model.onnx.data beside it. onnxruntime, onnx.checker and shape
inference then take the path, never the in-memory model.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import onnx

from pipeline import artifacts


def tensor_bytes(proto: onnx.ModelProto) -> int:
    """The bytes of the graph's initializers and constant tensors (subgraphs included)."""
    return _graph_bytes(proto.graph)


def _graph_bytes(graph: onnx.GraphProto) -> int:
    total = sum(t.ByteSize() for t in graph.initializer)
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                total += attr.t.ByteSize()
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                total += _graph_bytes(sub)
    return total


def save(proto: onnx.ModelProto, path: Path, threshold_mb: float) -> dict[str, Any]:
    """Write `proto` to `path` (atomically); with external data when its tensors exceed the threshold.
    The proto's tensors are moved out to the data file in the process."""
    size = tensor_bytes(proto)
    data = path.with_name(path.name + artifacts.ONNX_DATA_SUFFIX)
    if size <= threshold_mb * 2**20:
        artifacts.write_atomic(path, lambda tmp: onnx.save(proto, str(tmp)))
        data.unlink(missing_ok=True)
        return {"external_data": None, "tensor_bytes": size}
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".onnx-") as tmp:
        staged = Path(tmp) / path.name
        onnx.save_model(
            proto,
            str(staged),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=data.name,
            size_threshold=1024,
            convert_attribute=True,
        )
        written = (Path(tmp) / data.name).exists()  # no tensor over 1 KB: nothing went out
        # The data first: a model.onnx that exists is always beside the data it names.
        if written:
            os.replace(Path(tmp) / data.name, data)
        else:
            data.unlink(missing_ok=True)
        os.replace(staged, path)
    return {"external_data": data.name if written else None, "tensor_bytes": size}


def has_external_data(path: Path) -> bool:
    return path.with_name(path.name + artifacts.ONNX_DATA_SUFFIX).exists()
