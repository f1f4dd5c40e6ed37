"""Which TF op each ONNX node came from, recorded while tf2onnx converts.

tf2onnx converts one TF node at a time with its handler; the handler rewrites the node and makes new
ones (often named after the ONNX op: `Reshape__14223`). While a handler runs, every node it makes is
recorded as coming from that TF node, and the map is stored in the ONNX model's metadata. When a later
check fails on a node (onnx.checker, shape inference, onnxruntime), the error can then name the TF op
whose conversion wrote it: the export, not the user's model, is at fault there.
"""

from __future__ import annotations

import contextlib
import json
import re

METADATA_KEY = "tf2torch.tf_origins"


@contextlib.contextmanager
def recording():
    """Yields a dict filled, during the block, with ONNX node name -> "TFOp ('tf/node/name')"."""
    from tf2onnx import tfonnx
    from tf2onnx.graph import Graph

    origins: dict[str, str] = {}
    current: list[str | None] = [None]
    original_mapping = tfonnx.tensorflow_onnx_mapping
    original_make_node = Graph.make_node

    def make_node(self, *args, **kwargs):
        node = original_make_node(self, *args, **kwargs)
        if current[0] is not None:
            origins[node.name] = current[0]
        return node

    def tagged(func, op):
        def handler(g, node, **kwargs):
            previous, current[0] = current[0], f"{op} ('{node.name}')"
            origins[node.name] = current[0]
            try:
                return func(g, node, **kwargs)
            finally:
                current[0] = previous

        return handler

    def mapping(g, ops_mapping, *args, **kwargs):
        wrapped = {op: (tagged(func, op), kw) for op, (func, kw) in ops_mapping.items()}
        return original_mapping(g, wrapped, *args, **kwargs)

    tfonnx.tensorflow_onnx_mapping = mapping
    Graph.make_node = make_node
    try:
        yield origins
    finally:
        tfonnx.tensorflow_onnx_mapping = original_mapping
        Graph.make_node = original_make_node


def attach(model, origins: dict[str, str]) -> None:
    """Keep the origins of the nodes the model has (subgraphs included) in its metadata."""
    names = set(_node_names(model.graph))
    kept = {name: origin for name, origin in origins.items() if name in names}
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(kept, separators=(",", ":"))


def explain(model, message: str) -> str:
    """A sentence naming the TF op behind the node an error message names, or ''."""
    found = re.search(r"node name: ([^,)\s]+)|Node \(([^)]+)\)|node '([^']+)'", message)
    if model is None or not found:
        return ""
    name = next(g for g in found.groups() if g)
    entry = next((p.value for p in model.metadata_props if p.key == METADATA_KEY), None)
    origin = json.loads(entry).get(name) if entry else None
    if origin is None:
        return ""
    return (
        f"; node '{name}' was written by tf2onnx when converting the TF op {origin}, so the export of that "
        "op is at fault, not the model: report it with the op (python -m pipeline.coverage.export_sweep "
        "-k NAME reproduces single ops)"
    )


def _node_names(graph):
    for node in graph.node:
        yield node.name
        for attr in node.attribute:
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                yield from _node_names(sub)
