"""Erfc(x) = 1 - Erf(x). Keras's exact GELU (`gelu(approximate=False)`, MultiHeadAttention blocks,
ConvNeXt) computes with Erfc, which tf2onnx 1.17 has no handler for."""

import numpy as np
from tf2onnx import utils
from tf2onnx.handler import tf_op


@tf_op("Erfc")
class Erfc:
    @classmethod
    def version_9(cls, ctx, node, **kwargs):
        dtype = utils.map_onnx_to_numpy_type(ctx.get_dtype(node.input[0]))
        one = ctx.make_const(utils.make_name(f"{node.name}_one"), np.array(1, dtype=dtype))
        node.type = "Erf"
        erf_out = node.output[0]
        ctx.insert_new_node_on_output(
            "Sub", erf_out, inputs=[one.output[0], erf_out], name=utils.make_name(node.name)
        )
