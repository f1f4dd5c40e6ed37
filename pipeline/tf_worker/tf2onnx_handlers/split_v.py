"""tf.split with a size of -1 ("the rest") along an axis whose length is only known at run time:
tf2onnx 1.17 computes the rest from the static shape, which is -1 there, and writes a negative size
into the ONNX Split (onnxruntime: "All values must be >= 0"). This wraps tf2onnx's own handler (opset
13 and up, where Split takes its sizes as an input): the rest is computed in the graph first, the
axis's length from Shape minus the other sizes, and tf2onnx converts a SplitV with run-time sizes."""

import numpy as np
from onnx import TensorProto
from tf2onnx import utils

from pipeline.tf_worker.tf2onnx_handlers.wrapping import run_before


def _rest_at_run_time(ctx, node) -> None:
    sizes, axis = node.inputs[1], node.inputs[2]
    if not (sizes.is_const() and axis.is_const()):
        return
    split = [int(v) for v in sizes.get_tensor_value(as_list=True)]
    shape = ctx.get_shape(node.input[0])
    dim = int(axis.get_tensor_value())
    if split.count(-1) != 1 or shape is None or shape[dim] not in (-1, None):
        return  # no rest, or tf2onnx computes it from a known length
    length = ctx.make_node("Shape", [node.input[0]])
    picked = ctx.make_node(
        "Gather",
        [length.output[0], ctx.make_const(utils.make_name("axis"), np.array([dim], np.int64)).output[0]],
    )
    known = ctx.make_const(utils.make_name("known"), np.array([sum(v for v in split if v >= 0)], np.int64))
    rest = ctx.make_node("Sub", [picked.output[0], known.output[0]])
    where = split.index(-1)
    parts = [
        ctx.make_const(utils.make_name("sizes"), np.array(chunk, np.int64)).output[0]
        for chunk in (split[:where], split[where + 1 :])
    ]
    sizes_now = ctx.make_node("Concat", [parts[0], rest.output[0], parts[1]], attr={"axis": 0})
    ctx.set_dtype(sizes_now.output[0], TensorProto.INT64)
    ctx.set_shape(sizes_now.output[0], [len(split)])
    ctx.replace_input(node, node.input[1], sizes_now.output[0], 1)


run_before("SplitV", _rest_at_run_time, min_version=13)
