"""tf.image.resize(method='area') (ResizeArea) by a whole-number factor, as AveragePool.

tf2onnx 1.17 converts ResizeArea like a linear resize, which computes something else (measured: off
by 1.2 on inputs in [-1, 1]); the validate stage caught it, but the export should not write it. Area
resampling averages the input pixels each output pixel covers; when both sizes divide evenly that is
an average pool with kernel = stride = the factor, exactly. Other sizes are left unconverted, so the
export stage names the op.
"""

import tf2onnx.onnx_opset  # noqa: F401 - tf2onnx's handlers first, so these replace its ResizeArea
from tf2onnx import utils
from tf2onnx.handler import tf_op

_VERSIONS = [v for v, handlers in enumerate(tf_op.get_opsets()[""]) if "ResizeArea" in handlers]


def _resize_area(ctx, node, **kwargs):
    shape = ctx.get_shape(node.input[0])
    size = node.inputs[1].get_tensor_value(as_list=True) if node.inputs[1].is_const() else None
    utils.make_sure(
        shape is not None and size is not None and all(d and d > 0 for d in shape[1:3]),
        "ResizeArea needs static spatial sizes",
    )
    factors = [shape[1] // size[0], shape[2] // size[1]]
    utils.make_sure(
        not node.get_attr_value("align_corners", False)
        and all(f >= 1 for f in factors)
        and shape[1] == factors[0] * size[0]
        and shape[2] == factors[1] * size[1],
        "ResizeArea converts only for whole-number downscaling factors",
    )
    dtype = ctx.get_dtype(node.output[0])
    values = node.input[0]
    if ctx.get_dtype(values) != dtype:
        values = ctx.make_node("Cast", [values], attr={"to": dtype}).output[0]
    nchw = ctx.make_node("Transpose", [values], attr={"perm": [0, 3, 1, 2]})
    pooled = ctx.make_node(
        "AveragePool", [nchw.output[0]], attr={"kernel_shape": factors, "strides": factors}
    )
    out_shape = ctx.get_shape(node.output[0])
    name, outputs = node.name, node.output
    ctx.remove_node(name)
    ctx.make_node(
        "Transpose",
        [pooled.output[0]],
        attr={"perm": [0, 2, 3, 1]},
        name=name,
        outputs=outputs,
        shapes=[out_shape],
        dtypes=[dtype],
    )


for _version in _VERSIONS:
    tf_op.register_handler(_resize_area, _version, ["ResizeArea"], "", {})
