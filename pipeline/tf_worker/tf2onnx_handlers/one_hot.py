"""tf.one_hot gives an all-`off_value` row for a negative index; ONNX OneHot counts a negative index
from the end (index -1 is the last class). tf2onnx 1.17 passes indices through, so every negative
index becomes a wrong one-hot row. This wraps tf2onnx's own handler: negative indices are first
replaced by `depth`, which ONNX also maps to an all-`off_value` row."""

import numpy as np
from tf2onnx import utils

from pipeline.tf_worker.tf2onnx_handlers.wrapping import run_before


def _guard_negative(ctx, node) -> None:
    indices = node.input[0]
    dtype = ctx.get_dtype(indices)
    zero = ctx.make_const(
        utils.make_name(f"{node.name}_zero"), np.array(0, utils.map_onnx_to_numpy_type(dtype))
    )
    negative = ctx.make_node("Less", [indices, zero.output[0]])
    depth = ctx.make_node("Cast", [node.input[1]], attr={"to": dtype})
    guarded = ctx.make_node("Where", [negative.output[0], depth.output[0], indices])
    ctx.set_dtype(guarded.output[0], dtype)
    ctx.set_shape(guarded.output[0], ctx.get_shape(indices))
    ctx.replace_input(node, indices, guarded.output[0], 0)


run_before("OneHot", _guard_negative)
