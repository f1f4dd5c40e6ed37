"""Compatibility shims for library code this project runs but does not own.

NumPy 2: tf2onnx 1.17 still calls `np.product` (removed in NumPy 2) in graph.py when it writes tensors
to external storage: its large-model path (models over 2 GB). The alias restores it with `np.prod`,
the function NumPy 1 itself pointed `product` to. tests/test_numpy2.py fails if tf2onnx starts using
another removed API, so the list stays exact.

protobuf's upb backend: tf2onnx's `Node.update_proto` empties and refills the node's own NodeProto
after every optimizer pass. upb keeps a message's memory in an arena that only grows until the
message is freed, so every pass left another copy of each weight behind: 40-60x the weights in
memory for a ConvNeXt. Giving the node a fresh, empty NodeProto before the refill lets the old one
(and its arena) go. A constant's NodeProto gets no attributes at all: its value lives in the node's
attribute dict and becomes a graph initializer from there (`Graph.make_graph`), never from the
NodeProto, whose copy only doubled the weights in memory.
"""

import numpy as np

NUMPY2_ALIASES = {"product": "prod"}


def patch_numpy_for_tf2onnx() -> None:
    for missing, replacement in NUMPY2_ALIASES.items():
        if not hasattr(np, missing):
            setattr(np, missing, getattr(np, replacement))


def patch_tf2onnx_node_update_proto() -> None:
    from onnx import NodeProto
    from tf2onnx.graph import Node

    original = Node.update_proto
    if getattr(original, "_tf2torch_fresh_proto", False):
        return

    def update_proto(self, external_tensor_storage=None):
        old = self._op
        self._op = NodeProto(name=old.name, op_type=old.op_type, domain=old.domain, doc_string=old.doc_string)
        if self.is_const():
            self._op.input.extend(self.input)
            self._op.output.extend(self.output)
            return
        original(self, external_tensor_storage)

    update_proto._tf2torch_fresh_proto = True
    Node.update_proto = update_proto
