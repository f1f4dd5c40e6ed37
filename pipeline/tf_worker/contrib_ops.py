"""Contrib-domain nodes tf2onnx leaves in a graph where a standard ONNX op means the same.

tf2onnx 1.17 builds some subgraphs (the If branches of MatrixDiagPartV3 and MatrixSetDiagV3) with
onnxruntime's `com.microsoft` Range, the op it used before ONNX had one, without declaring that
domain: onnxruntime runs it, no other importer knows it. ONNX's Range (opset 11) has the same inputs
and semantics, so such nodes move to the standard domain, in every subgraph."""

from __future__ import annotations

import onnx

# (domain, op type) -> the first ONNX opset whose op of that name means the same
STANDARD_SINCE = {("com.microsoft", "Range"): 11}


def to_standard_ops(graph: onnx.GraphProto, opset: int) -> int:
    """Moves the nodes STANDARD_SINCE lists to the ONNX domain; returns how many moved."""
    moved = 0
    for node in graph.node:
        since = STANDARD_SINCE.get((node.domain, node.op_type))
        if since is not None and opset >= since:
            node.domain = ""
            moved += 1
        for attr in node.attribute:
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                moved += to_standard_ops(sub, opset)
    return moved
