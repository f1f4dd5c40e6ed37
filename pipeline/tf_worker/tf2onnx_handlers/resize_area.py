"""tf.image.resize(method='area') (ResizeArea), exactly.

tf2onnx 1.17 converts ResizeArea like a linear resize, which computes something else (measured: off
by 1.2 on inputs in [-1, 1]); the validate stage caught it, but the export should not write it. Area
resampling averages the input pixels each output pixel covers, with the pixels it covers in part
weighted by the part. When both sizes divide evenly that is an average pool with kernel = stride =
the factor (what model.py then shows as nn.AvgPool2d); any other pair of sizes, larger or smaller, is
a fixed linear map per axis: two MatMuls with the coverage matrices TF's kernel uses (scale = in /
out). align_corners and sizes unknown at export time go to tf2onnx's own handler (wrapping.py's
fallback), which the validate stage then checks.
"""

import numpy as np
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
    utils.make_sure(not node.get_attr_value("align_corners", False), "ResizeArea with align_corners")
    dtype = ctx.get_dtype(node.output[0])
    values = node.input[0]
    if ctx.get_dtype(values) != dtype:
        values = ctx.make_node("Cast", [values], attr={"to": dtype}).output[0]
    nchw = ctx.make_node("Transpose", [values], attr={"perm": [0, 3, 1, 2]}).output[0]
    if all(n % m == 0 for n, m in zip(shape[1:3], size, strict=True)):
        factors = [shape[1] // size[0], shape[2] // size[1]]
        attr = {"kernel_shape": factors, "strides": factors}
        resized = ctx.make_node("AveragePool", [nchw], attr=attr).output[0]
    else:
        numpy_type = utils.map_onnx_to_numpy_type(dtype)
        rows = coverage(shape[1], size[0]).astype(numpy_type)  # [out H, in H]
        columns = coverage(shape[2], size[1]).T.astype(numpy_type)  # [in W, out W]
        rows_name, columns_name = (
            utils.make_name(f"{node.name}_rows"),
            utils.make_name(f"{node.name}_columns"),
        )
        across = ctx.make_node("MatMul", [nchw, ctx.make_const(columns_name, columns).output[0]])
        resized = ctx.make_node(
            "MatMul", [ctx.make_const(rows_name, rows).output[0], across.output[0]]
        ).output[0]
    out_shape = ctx.get_shape(node.output[0])
    name, outputs = node.name, node.output
    ctx.remove_node(name)
    ctx.make_node(
        "Transpose",
        [resized],
        attr={"perm": [0, 2, 3, 1]},
        name=name,
        outputs=outputs,
        shapes=[out_shape],
        dtypes=[dtype],
    )


def coverage(length: int, out: int) -> np.ndarray:
    """[out, length]: how much of each input pixel output pixel o covers, over the span it covers
    ([o * scale, (o + 1) * scale), scale = length / out, as TF's ResizeArea kernel)."""
    scale = length / out
    starts = np.arange(out)[:, None] * scale
    pixels = np.arange(length)[None, :]
    overlap = np.minimum(starts + scale, pixels + 1) - np.maximum(starts, pixels)
    return np.clip(overlap, 0, None) / scale


for _version in _VERSIONS:
    tf_op.register_handler(_resize_area, _version, ["ResizeArea"], "", {})
