"""Rewrites of a frozen TF GraphDef before tf2onnx converts it."""

from __future__ import annotations

import tensorflow as tf

_CALL_OPS = {"PartitionedCall", "StatefulPartitionedCall"}
# Keras 3 wraps some layers (grouped convolutions, ConvNeXt) in jit-compiled functions that are marked
# not to be inlined; grappler then leaves the call in place and tf2onnx cannot convert it.
_NO_INLINE_ATTRS = ("_noinline", "_XlaMustCompile")


def inline_function_calls(graph_def, input_names: list[str], output_names: list[str]):
    """Inline calls to functions marked no-inline/must-compile; return the graph unchanged if there are none."""
    from tf2onnx import tf_loader

    if not any(node.op in _CALL_OPS for node in graph_def.node):
        return graph_def
    for node in graph_def.node:
        for attr in _NO_INLINE_ATTRS:
            if attr in node.attr:
                del node.attr[attr]
    for function in graph_def.library.function:
        for attr in _NO_INLINE_ATTRS:
            if attr in function.attr:
                del function.attr[attr]
    with tf.Graph().as_default():  # grappler's meta-graph export needs graph mode
        return tf_loader.tf_optimize(input_names, output_names, graph_def)
