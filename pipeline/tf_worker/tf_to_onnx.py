"""TF graph to ONNX with tf2onnx, in about 2-2.5x the model's weights of memory instead of 40-60x.

tf2onnx's own entry points (`from_saved_model` followed by `from_graph_def`) freeze the model into a
new function, run grappler twice and import the full graph into TensorFlow three times; every step
copies every weight, and grappler alone takes ~10x. Here the same library pieces run in a leaner
order, and the weights travel beside the graph, never inside it:

1. freeze a Keras model's call traced in memory (`freeze_function`) or a SavedModel signature
   (`freeze_saved_model`) with tf2onnx's large-model freezer (a GraphDef only, no new function), with
   TensorFlow's variable-to-constant step writing a tiny tag instead of each weight's bytes; the
   weights stay the numpy arrays the freezer read (`Weights`: node name -> array), and each tagged
   constant becomes a placeholder of the same dtype and shape;
2. run grappler once on that graph: it inlines functions and folds shape arithmetic but never sees,
   let alone copies, a weight (large constants of a GraphDef read from disk are moved out the same way);
3. import the graph into TensorFlow with the weights as empty constants (tf2onnx's `compress_graph_def`
   form, made for >2 GB models) and hand tf2onnx their bytes separately;
4. run tf2onnx's ONNX optimizers in place, then drop the weights and build the ModelProto's graph in
   place (`_model_proto`).
   Upstream copies the whole graph before each optimizer so it can skip one that raises; that copy is
   the peak. If an optimizer raises here, the conversion is rebuilt and rerun the upstream way, with a
   warning in the log.

Protobuf's Python messages keep a removed field's bytes until the whole message is freed, which is
why weights are kept out of GraphDefs from the start rather than removed from them afterwards.
"""

from __future__ import annotations

import contextlib
import gc
import logging

import numpy as np
import tensorflow as tf

from pipeline.common import tf_origins
from pipeline.tf_worker import contrib_ops, tf_idioms
from pipeline.tf_worker.tf2onnx_handlers import wrapping

log = logging.getLogger("tf2torch.export")

# Constants above this size are weights as far as grappler is concerned; small ones (shapes, axes)
# stay constants so grappler can still fold shape arithmetic. tf2onnx's compress_graph_def uses 1000.
LARGE_CONSTANT_BYTES = 1024

_CALL_OPS = {"PartitionedCall", "StatefulPartitionedCall"}
# Keras 3 wraps some layers (grouped convolutions, ConvNeXt) in jit-compiled functions that are marked
# not to be inlined; grappler then leaves the call in place and tf2onnx cannot convert it.
_NO_INLINE_ATTRS = ("_noinline", "_XlaMustCompile")


# A weight's place in a GraphDef: Placeholder nodes standing for `Weights` entries of the same name.
Weights = dict  # node name -> np.ndarray

_TAG = b"tf2torch-weight:"


def freeze_saved_model(path: str, signature: str, every_variable: bool = False):
    """Return (graph_def, weights, input tensors, output tensors, tensor renames, initialized tables).
    `every_variable`: see `freeze_function`."""
    from tf2onnx import tf_loader

    with _weights_kept_apart(every_variable) as tagged:
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
    _drop_frozen_state_writes(graph_def)
    weights = _untag(graph_def, tagged)
    gc.collect()  # the loaded SavedModel's variables: the weights now live in `weights` only
    return graph_def, weights, in_tensors, out_tensors, renames, tables


def freeze_function(func, every_variable: bool = False):
    """(graph_def, weights, input tensors, output tensors) of a concrete function, its variables and
    captured constants frozen: the in-memory counterpart of `freeze_saved_model`.

    `every_variable`: every float variable, however small, travels as a weight (a placeholder for
    grappler), so that no graph optimisation folds it into another constant or drops it for its value
    (an all-zero bias, a BatchNorm folded into the conv before it): the marked export needs each
    variable where the model uses it (marked_export.py)."""
    from tf2onnx import tf_loader

    captured = {t.name for t in func.graph.internal_captures}
    in_tensors = [t.name for t in func.inputs if t.dtype != tf.resource and t.name not in captured]
    out_tensors = [t.name for t in func.outputs]
    with _weights_kept_apart(every_variable) as tagged:
        graph_def = tf_loader.from_function(func, in_tensors, out_tensors, large_model=True)
    graph_def = tf_loader.fix_freezing_errors_part2(graph_def)
    _drop_frozen_state_writes(graph_def)
    return graph_def, _untag(graph_def, tagged), in_tensors, out_tensors


# Ops that only update a variable. Once the variables are constants, an update can change no output
# (every read was frozen to the value before it); left in, it no longer imports into a graph.
_STATE_WRITES = {"AssignVariableOp", "AssignAddVariableOp", "AssignSubVariableOp"}


def _drop_frozen_state_writes(graph_def) -> None:
    """Remove variable updates left in an inference graph, such as the seed-generator increments of
    Keras 3 layers with dropout (the RNN dropout masks are built even when `training=False`), and
    every control dependency on them. Updates of variables that are still variables stay."""
    _drop_writes_in(graph_def.node)
    for function in graph_def.library.function:
        dropped = _drop_writes_in(function.node_def)
        for key in [k for k, node in function.control_ret.items() if node in dropped]:
            del function.control_ret[key]
            function.signature.control_output.remove(key)


def _drop_writes_in(nodes) -> set[str]:
    by_name = {n.name: n for n in nodes}

    def frozen(ref: str) -> bool:
        source = by_name.get(ref.lstrip("^").split(":")[0])
        return source is None or source.op not in ("VarHandleOp", "Placeholder")

    dropped = {n.name for n in nodes if n.op in _STATE_WRITES and frozen(n.input[0])}
    if dropped:
        kept = [n for n in nodes if n.name not in dropped]
        for node in kept:
            inputs = [i for i in node.input if not (i.startswith("^") and i[1:] in dropped)]
            del node.input[:]
            node.input.extend(inputs)
        del nodes[:]
        nodes.extend(kept)
    return dropped


@contextlib.contextmanager
def _weights_kept_apart(every_float: bool = False):
    """While TensorFlow turns variables into constants, each large value (with `every_float`, each
    float value) becomes a tagged empty TensorProto and the array itself is kept (no copy) in the
    yielded dict, tag -> array."""
    from tensorflow.core.framework import tensor_pb2
    from tensorflow.python.framework import convert_to_constants, tensor_util

    tagged: dict[bytes, np.ndarray] = {}
    original_proto = tensor_util.make_tensor_proto
    original_replace = convert_to_constants._replace_variables_by_constants
    active = False

    def make_tensor_proto(values, dtype=None, shape=None, verify_shape=False, allow_broadcast=False):
        array = isinstance(values, np.ndarray)
        large = array and values.nbytes > LARGE_CONSTANT_BYTES
        floats = every_float and array and values.size and values.dtype.kind in "fc"
        if active and (large or floats) and values.dtype.kind in "biufc":  # bfloat16, strings go in
            tag = _TAG + str(len(tagged)).encode()
            tagged[tag] = values
            return tensor_pb2.TensorProto(
                dtype=tf.as_dtype(dtype or values.dtype).as_datatype_enum,
                tensor_shape=tf.TensorShape(shape or values.shape).as_proto(),
                tensor_content=tag,
            )
        return original_proto(values, dtype, shape, verify_shape, allow_broadcast)

    def replace_variables_by_constants(*args, **kwargs):
        nonlocal active
        active = True
        try:
            return original_replace(*args, **kwargs)
        finally:
            active = False

    tensor_util.make_tensor_proto = make_tensor_proto
    convert_to_constants._replace_variables_by_constants = replace_variables_by_constants
    try:
        yield tagged
    finally:
        tensor_util.make_tensor_proto = original_proto
        convert_to_constants._replace_variables_by_constants = original_replace


def _untag(graph_def, tagged: dict[bytes, np.ndarray]) -> Weights:
    """Tagged constants of the graph become placeholders named in the returned weights; those inside a
    function body (which cannot take a placeholder) get their bytes back."""
    weights: Weights = {}
    for node in graph_def.node:
        if _is_tagged(node):
            weights[node.name] = tagged.pop(node.attr["value"].tensor.tensor_content)
            _to_placeholder(node)
    for function in graph_def.library.function:
        for node in function.node_def:
            if _is_tagged(node):
                value = tagged.pop(node.attr["value"].tensor.tensor_content)
                node.attr["value"].tensor.tensor_content = value.tobytes()
    if tagged:  # a tagged value that is no node of the graph: it would be converted as empty
        raise RuntimeError(f"{len(tagged)} frozen weights are missing from the frozen graph")
    return weights


def _is_tagged(node) -> bool:
    return node.op == "Const" and node.attr["value"].tensor.tensor_content.startswith(_TAG)


def optimize_tf_graph(graph_def, input_tensors: list[str], output_tensors: list[str], weights: Weights):
    """Inline function calls and fold constants with grappler, without letting it see the weights.
    Large constants still in `graph_def` move to `weights` (which is updated) first."""
    from tf2onnx import tf_loader

    _allow_inlining(graph_def)
    for node in graph_def.node:
        if node.op == "Const" and len(node.attr["value"].tensor.tensor_content) > LARGE_CONSTANT_BYTES:
            weights[node.name] = tf.make_ndarray(node.attr["value"].tensor)
            _to_placeholder(node)
    with tf.Graph().as_default():  # grappler's meta-graph export needs graph mode
        optimized = tf_loader.tf_optimize(list(input_tensors), list(output_tensors), graph_def)
    optimized, _ = tf_idioms.rewrite_idioms(optimized, list(output_tensors))
    kept = {n.name for n in optimized.node if n.op == "Placeholder"}
    for name in [n for n in weights if n not in kept]:
        del weights[name]  # grappler pruned the node: nothing reads this weight
    return optimized


def with_weights(graph_def, weights: Weights):
    """A copy of `graph_def` with the weights back in as constants, for running it in TensorFlow."""
    full = type(graph_def)()
    full.CopyFrom(graph_def)
    for node in full.node:
        if node.name in weights:
            _to_const(node, weights[node.name])
    return full


def graph_def_to_onnx(
    graph_def,
    weights: Weights,
    input_tensors: list[str],
    output_tensors: list[str],
    renames: dict[str, str],
    opset: int,
    initialized_tables=None,
    optimizers=None,
    nchw: tuple[list[str], list[str]] = ([], []),
):
    """Convert a frozen, optimized GraphDef whose placeholders in `weights` stand for them to an ONNX
    ModelProto. Consumes `weights` (cleared once tf2onnx holds its own copy)."""
    from tf2onnx import optimizer, tfonnx

    for node in graph_def.node:
        if node.name in weights:
            _to_const(node, weights[node.name], empty=True)
    constant_values = _ConstantBytes(weights)
    # A PlaceholderWithDefault the model takes as an input is one (fed); any other keeps its default
    # (a training flag in a frozen graph). tf2onnx otherwise refuses one whose default is computed.
    fed = {t.split(":")[0] for t in input_tensors}
    with_default = [n.name for n in graph_def.node if n.op == "PlaceholderWithDefault"]
    with tf.Graph().as_default() as tf_graph:
        tf.import_graph_def(graph_def, name="")

    origins: dict[str, str] = {}  # ONNX node -> the TF op it was converted from (tf_origins.py)

    def build():
        wrapping.reset()  # the nodes of this conversion a project handler failed on, from here
        with tf_graph.as_default(), tf_origins.recording() as recorded:
            graph = tfonnx.process_tf_graph(
                tf_graph,
                continue_on_error=True,  # unsupported ops stay in the graph; export reports them all
                opset=opset,
                input_names=list(input_tensors),
                output_names=list(output_tensors),
                tensors_to_rename=renames,
                const_node_values=constant_values,
                initialized_tables=initialized_tables,
                ignore_default=[n for n in with_default if n in fed],
                use_default=[n for n in with_default if n not in fed],
                inputs_as_nchw=list(nchw[0]),
                outputs_as_nchw=list(nchw[1]),
            )
        origins.clear()
        origins.update(recorded)
        return graph

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
    weights.clear()  # the ONNX graph holds its own copy: one copy fewer while the ModelProto is built
    gc.collect()
    model = _model_proto(onnx_graph)
    contrib_ops.to_standard_ops(model.graph, opset)
    tf_origins.attach(model, origins)
    return model


_MAIN_GRAPH = "tf2torch main graph"


def _model_proto(onnx_graph):
    """tf2onnx's `Graph.make_model`, with the GraphProto built inside the ModelProto: upstream builds it
    on its own and copies it in, holding the weights three times (node attributes, GraphProto,
    ModelProto) at its peak."""
    import onnx
    from tf2onnx import __version__ as tf2onnx_version
    from tf2onnx import constants

    model = onnx.ModelProto(
        ir_version=constants.OPSET_TO_IR_VERSION[onnx_graph.opset],
        producer_name="tf2onnx",
        producer_version=tf2onnx_version,
    )
    model.opset_import.extend(
        [
            onnx.helper.make_opsetid(constants.ONNX_DOMAIN, onnx_graph.opset),
            constants.AI_ONNX_ML_OPSET,
            *(onnx_graph.extra_opset or []),
        ]
    )
    upstream = onnx.helper.make_graph

    def make_graph_in_model(
        nodes,
        name,
        inputs,
        outputs,
        initializer=None,
        doc_string=None,
        value_info=None,
        sparse_initializer=None,
    ):
        if name != _MAIN_GRAPH:  # a Loop or If body, built while the main graph is
            return upstream(
                nodes, name, inputs, outputs, initializer, doc_string, value_info, sparse_initializer
            )
        graph = model.graph
        graph.name = "tf2onnx"  # the name upstream gives it
        graph.node.extend(nodes)
        graph.input.extend(inputs)
        graph.output.extend(outputs)
        graph.initializer.extend(initializer or [])
        graph.sparse_initializer.extend(sparse_initializer or [])
        graph.value_info.extend(value_info or [])
        if doc_string:
            graph.doc_string = doc_string
        return graph

    onnx.helper.make_graph = make_graph_in_model
    try:
        onnx_graph.make_graph("converted by tf2torch with tf2onnx", graph_name=_MAIN_GRAPH)
    finally:
        onnx.helper.make_graph = upstream
    return model


class _ConstantBytes(dict):
    """tf2onnx's `const_node_values` (node name -> tensor bytes), made from the arrays one at a time
    when tf2onnx asks instead of all at once."""

    def __init__(self, weights: Weights):
        super().__init__()
        self._weights = weights

    def __contains__(self, name) -> bool:
        return name in self._weights

    def __bool__(self) -> bool:
        return bool(self._weights)

    def __getitem__(self, name) -> bytes:
        return self._weights[name].tobytes()  # C order whatever the array's strides


def _allow_inlining(graph_def) -> None:
    if not any(node.op in _CALL_OPS for node in graph_def.node):
        return
    for holder in [*graph_def.node, *graph_def.library.function]:
        for attr in _NO_INLINE_ATTRS:
            if attr in holder.attr:
                del holder.attr[attr]


def _to_placeholder(node) -> None:
    dtype = node.attr["dtype"].type
    shape = node.attr["value"].tensor.tensor_shape
    node.op = "Placeholder"
    kept_shape = type(shape)()
    kept_shape.CopyFrom(shape)
    node.attr.clear()
    node.attr["dtype"].type = dtype
    node.attr["shape"].shape.CopyFrom(kept_shape)


def _to_const(node, value: np.ndarray, empty: bool = False) -> None:
    """Placeholder -> Const holding `value`; with `empty`, only its dtype and shape (the compressed
    form tf2onnx fills from `const_node_values`)."""
    dtype = node.attr["dtype"].type
    node.op = "Const"
    node.attr.clear()
    node.attr["dtype"].type = dtype
    tensor = node.attr["value"].tensor
    tensor.dtype = dtype
    tensor.tensor_shape.CopyFrom(tf.TensorShape(value.shape).as_proto())
    if not empty:
        tensor.tensor_content = value.tobytes()
