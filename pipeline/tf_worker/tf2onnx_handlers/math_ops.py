"""TF math ops tf2onnx 1.17 has no handler for, written with ONNX ops that compute the same:
Expm1 (keras.ops.expm1, CELU), Log1p (keras.ops.log1p, logaddexp, softplus variants), EuclideanNorm
(tf.norm / reduce_euclidean_norm) through tf2onnx's own reduction handler as ReduceL2, and Bucketize
(keras.layers.Discretization) as a count of the boundaries each value reaches."""

import numpy as np
from onnx import TensorProto
from tf2onnx import utils
from tf2onnx.handler import tf_op
from tf2onnx.onnx_opset.reduction import ReduceOpBase


def _one(ctx, node):
    dtype = utils.map_onnx_to_numpy_type(ctx.get_dtype(node.input[0]))
    return ctx.make_const(utils.make_name(f"{node.name}_one"), np.array(1, dtype=dtype)).output[0]


@tf_op("Expm1")
class Expm1:
    @classmethod
    def version_1(cls, ctx, node, **kwargs):
        one = _one(ctx, node)
        node.type = "Exp"
        ctx.insert_new_node_on_output(
            "Sub", node.output[0], inputs=[node.output[0], one], name=utils.make_name(node.name)
        )


@tf_op("Log1p")
class Log1p:
    @classmethod
    def version_1(cls, ctx, node, **kwargs):
        shifted = ctx.make_node("Add", [node.input[0], _one(ctx, node)], name=utils.make_name(node.name))
        ctx.replace_input(node, node.input[0], shifted.output[0], 0)
        node.type = "Log"


tf_op("EuclideanNorm", onnx_op="ReduceL2")(ReduceOpBase)


@tf_op("Bucketize")
class Bucketize:
    @classmethod
    def version_13(cls, ctx, node, **kwargs):
        # index = the number of boundaries b with b <= x, which is what TF's Bucketize returns
        boundaries = np.array(node.get_attr_value("boundaries"), dtype=np.float32)
        dtype = utils.map_onnx_to_numpy_type(ctx.get_dtype(node.input[0]))
        values = ctx.make_const(utils.make_name(f"{node.name}_boundaries"), boundaries.astype(dtype))
        axis = ctx.make_const(utils.make_name(f"{node.name}_axis"), np.array([-1], dtype=np.int64))
        expanded = ctx.make_node("Unsqueeze", [node.input[0], axis.output[0]])
        reached = ctx.make_node("GreaterOrEqual", [expanded.output[0], values.output[0]])
        counts = ctx.make_node("Cast", [reached.output[0]], attr={"to": TensorProto.INT32})
        ctx.remove_node(node.name)
        ctx.make_node(
            "ReduceSum",
            [counts.output[0], axis.output[0]],
            attr={"keepdims": 0},
            name=node.name,
            outputs=node.output,
            shapes=[ctx.get_shape(node.output[0])],
            dtypes=[TensorProto.INT32],
        )
