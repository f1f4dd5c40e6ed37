"""tf.image.extract_patches (ExtractImagePatches) as one convolution with a 0/1 kernel.

tf2onnx 1.17's handler multiplies the batch size into a Reshape's target, so with an unknown batch
(every Keras model) it writes the dimension -3 and the graph fails shape inference. A patch is a
window of the input, so a Conv whose kernel picks each (row, column, channel) of the window into its
own output channel computes it exactly: output channel (i * kw + j) * C + c reads input channel c at
window position (i, j), which is TF's order. Strides, rates (dilations) and padding carry over; SAME
pads are written explicitly when the spatial size is known (onnxruntime refuses auto_pad with
dilations), else as SAME_UPPER (TF pads more at the end).
"""

import numpy as np
from tf2onnx import utils
from tf2onnx.handler import tf_op


@tf_op("ExtractImagePatches")
class ExtractImagePatches:
    @classmethod
    def version_9(cls, ctx, node, **kwargs):
        _, kh, kw, _ = node.get_attr_value("ksizes")
        _, sh, sw, _ = node.get_attr_value("strides")
        _, rh, rw, _ = node.get_attr_value("rates")
        padding = node.get_attr_value("padding")
        padding = padding.decode() if isinstance(padding, bytes) else padding
        shape = ctx.get_shape(node.input[0])
        channels = shape[3] if shape else -1
        utils.make_sure(channels and channels > 0, "ExtractImagePatches needs a known channel count")
        dtype = utils.map_onnx_to_numpy_type(ctx.get_dtype(node.input[0]))
        kernel = np.zeros((kh * kw * channels, channels, kh, kw), dtype=dtype)
        for i in range(kh):
            for j in range(kw):
                for c in range(channels):
                    kernel[(i * kw + j) * channels + c, c, i, j] = 1
        attr = {"kernel_shape": [kh, kw], "strides": [sh, sw], "dilations": [rh, rw]}
        if padding == "VALID":
            attr["pads"] = [0, 0, 0, 0]
        elif shape[1] > 0 and shape[2] > 0:
            begin_end = [_same(n, k, s, r) for n, k, s, r in ((shape[1], kh, sh, rh), (shape[2], kw, sw, rw))]
            attr["pads"] = [begin_end[0][0], begin_end[1][0], begin_end[0][1], begin_end[1][1]]
        else:
            attr["auto_pad"] = "SAME_UPPER"
        weights = ctx.make_const(utils.make_name(f"{node.name}_kernel"), kernel)
        nchw = ctx.make_node("Transpose", [node.input[0]], attr={"perm": [0, 3, 1, 2]})
        conv = ctx.make_node("Conv", [nchw.output[0], weights.output[0]], attr=attr)
        out_shape = ctx.get_shape(node.output[0])
        out_dtype = ctx.get_dtype(node.output[0])
        ctx.remove_node(node.name)
        ctx.make_node(
            "Transpose",
            [conv.output[0]],
            attr={"perm": [0, 2, 3, 1]},
            name=node.name,
            outputs=node.output,
            shapes=[out_shape],
            dtypes=[out_dtype],
        )


def _same(size: int, kernel: int, stride: int, rate: int) -> tuple[int, int]:
    effective = (kernel - 1) * rate + 1
    total = max((-(-size // stride) - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2
