"""TF graph to ONNX with tf2onnx, in about 2-4x the model's weights of memory instead of 40-60x.

tf2onnx's own entry points (`from_saved_model` followed by `from_graph_def`) freeze the model into a
new function, run grappler twice and import the full graph into TensorFlow three times; every step
copies every weight, and grappler alone takes ~10x. Here the same library pieces run in a leaner
order:

1. freeze the signature with tf2onnx's large-model freezer (a GraphDef only, no new function);
2. run grappler once, with each large constant swapped for a placeholder of the same dtype and shape,
   so grappler inlines functions and folds shape arithmetic but never copies weights; put the
   constants back afterwards;
3. import the graph into TensorFlow with its large constants emptied (tf2onnx's `compress_graph_def`,
   made for >2 GB models) and hand tf2onnx the values separately;
4. run tf2onnx's ONNX optimizers in place. Upstream copies the whole graph before each optimizer so it
   can skip one that raises; that copy is the peak. If an optimizer raises here, the conversion is
   rebuilt and rerun the upstream way, with a warning in the log.
"""

from __future__ import annotations

import gc
import logging

import tensorflow as tf

log = logging.getLogger("tf2torch.export")

# Constants above this size are weights as far as grappler is concerned; small ones (shapes, axes)
# stay constants so grappler can still fold shape arithmetic. tf2onnx's compress_graph_def uses 1000.
LARGE_CONSTANT_BYTES = 1024

_CALL_OPS = {"PartitionedCall", "StatefulPartitionedCall"}
# Keras 3 wraps some layers (grouped convolutions, ConvNeXt) in jit-compiled functions that are marked
# not to be inlined; grappler then leaves the call in place and tf2onnx cannot convert it.
_NO_INLINE_ATTRS = ("_noinline", "_XlaMustCompile")


def freeze_saved_model(path: str, signature: str):
    """Return (graph_def, input tensors, output tensors, tensor renames, initialized tables)."""
    from tf2onnx import tf_loader

    graph_def, in_tensors, out_tensors, tables, renames = tf_loader.from_saved_model(
        path,
        None,
        None,
        signatures=[signature],
        large_model=True,  # the freezer that returns a GraphDef without building a new function
        return_initialized_tables=True,
        return_tensors_to_rename=True,
    )
    # The large-model path skips this upstream fix (ResourceGather left inside functions).
    graph_def = tf_loader.fix_freezing_errors_part2(graph_def)
    return graph_def, in_tensors, out_tensors, renames, tables


def optimize_tf_graph(graph_def, input_tensors: list[str], output_tensors: list[str]):
    """Inline function calls and fold constants with grappler, without letting it copy the weights."""
    from tf2onnx import tf_loader

    _allow_inlining(graph_def)
    hidden = _hide_large_constants(graph_def)
    with tf.Graph().as_default():  # grappler's meta-graph export needs graph mode
        optimized = tf_loader.tf_optimize(list(input_tensors), list(output_tensors), graph_def)
    del graph_def
    _restore_large_constants(optimized, hidden)
    return optimized


def graph_def_to_onnx(
    graph_def,
    input_tensors: list[str],
    output_tensors: list[str],
    renames: dict[str, str],
    opset: int,
    initialized_tables=None,
    optimizers=None,
    nchw: tuple[list[str], list[str]] = ([], []),
):
    """Convert a frozen, optimized GraphDef to an ONNX ModelProto (graph_def's constants are emptied)."""
    from tf2onnx import optimizer, tf_utils, tfonnx

    constant_values = tf_utils.compress_graph_def(graph_def)
    with tf.Graph().as_default() as tf_graph:
        tf.import_graph_def(graph_def, name="")

    def build():
        with tf_graph.as_default():
            return tfonnx.process_tf_graph(
                tf_graph,
                continue_on_error=True,  # unsupported ops stay in the graph; export reports them all
                opset=opset,
                input_names=list(input_tensors),
                output_names=list(output_tensors),
                tensors_to_rename=renames,
                const_node_values=constant_values,
                initialized_tables=initialized_tables,
                inputs_as_nchw=list(nchw[0]),
                outputs_as_nchw=list(nchw[1]),
            )

    try:
        onnx_graph = optimizer.optimize_graph(build(), catch_errors=False, optimizers=optimizers)
    except Exception as exc:  # noqa: BLE001 - any optimizer bug; the upstream way skips that optimizer
        log.warning(
            "a tf2onnx optimizer failed (%s: %s); converting again with tf2onnx's error recovery, "
            "which copies the graph before each optimizer and needs more memory",
            type(exc).__name__,
            exc,
        )
        onnx_graph = None
    if onnx_graph is None:
        # Outside the except block, so the failed attempt's traceback (and its graph) can be freed.
        gc.collect()
        onnx_graph = optimizer.optimize_graph(build(), catch_errors=True, optimizers=optimizers)
    return onnx_graph.make_model("converted by tf2torch with tf2onnx")


def _allow_inlining(graph_def) -> None:
    if not any(node.op in _CALL_OPS for node in graph_def.node):
        return
    for holder in [*graph_def.node, *graph_def.library.function]:
        for attr in _NO_INLINE_ATTRS:
            if attr in holder.attr:
                del holder.attr[attr]


def _hide_large_constants(graph_def) -> dict:
    hidden = {}
    for node in graph_def.node:
        if node.op != "Const":
            continue
        tensor = node.attr["value"].tensor
        if len(tensor.tensor_content) <= LARGE_CONSTANT_BYTES:
            continue
        hidden[node.name] = node.attr["value"]  # the AttrValue message moves out of the graph intact
        value = node.attr.pop("value")
        dtype = node.attr["dtype"].type
        node.op = "Placeholder"
        node.attr.clear()
        node.attr["dtype"].type = dtype
        node.attr["shape"].shape.CopyFrom(value.tensor.tensor_shape)
    return hidden


def _restore_large_constants(graph_def, hidden: dict) -> None:
    for node in graph_def.node:
        value = hidden.pop(node.name, None)
        if value is None:
            continue
        if node.op != "Placeholder":  # grappler never rewrites placeholders; a clash would be a bug
            raise RuntimeError(f"grappler changed the hidden constant {node.name} into a {node.op}")
        dtype = node.attr["dtype"].type
        node.op = "Const"
        node.attr.clear()
        node.attr["dtype"].type = dtype
        node.attr["value"].CopyFrom(value)
