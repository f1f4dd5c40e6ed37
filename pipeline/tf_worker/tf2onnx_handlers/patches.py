"""tf.image.extract_patches (ExtractImagePatches) as strided slices of the input, one per window
position, concatenated.

tf2onnx 1.17's handler multiplies the batch size into a Reshape's target, so with an unknown batch
(every Keras model) it writes the dimension -3 and the graph fails shape inference. A patch's value at
window position (i, j) is the input shifted by (i * rate, j * rate) and sampled at the stride: one
Slice per position, and TF's order of a patch's values ((i * kw + j) * C + c) is the Concat of those
slices along the channels. Nothing is computed and no constant grows with the channels. (A convolution
with a 0/1 kernel computes the same, but its kernel holds C^2 * (kh * kw)^2 values: 2.5 GB for the 7x7
windows of 512 channels a neighbourhood-attention transformer takes, where the export ran out of
memory, and a kernel that model.py would have carried as weights.) Each slice ends where the last
window ends, counted from the end of the axis, so the spatial size may stay unknown. SAME pads first,
as TF does (more at the end): constant pads where the size is known or the stride is 1, else pads
computed from the size at run time (which model.py cannot follow yet: it reports that node).
"""

import numpy as np
from tf2onnx import utils
from tf2onnx.handler import tf_op

_TO_END = np.iinfo(np.int64).max


@tf_op("ExtractImagePatches")
class ExtractImagePatches:
    @classmethod
    def version_10(cls, ctx, node, **kwargs):
        _, kh, kw, _ = node.get_attr_value("ksizes")
        _, sh, sw, _ = node.get_attr_value("strides")
        _, rh, rw, _ = node.get_attr_value("rates")
        padding = node.get_attr_value("padding")
        padding = padding.decode() if isinstance(padding, bytes) else padding
        utils.make_sure(padding in ("VALID", "SAME"), "ExtractImagePatches: padding %s", padding)
        source = node.input[0]
        windows = ((kh, sh, rh), (kw, sw, rw))
        if padding == "SAME":
            source = _pad_same(ctx, node, source, windows)
        axes = ctx.make_const(utils.make_name(f"{node.name}_axes"), np.array([1, 2], np.int64)).output[0]
        steps = ctx.make_const(utils.make_name(f"{node.name}_steps"), np.array([sh, sw], np.int64)).output[0]
        slices = []
        for i in range(kh):
            for j in range(kw):
                starts = np.array([i * rh, j * rw], np.int64)
                ends = np.array([_end(kh, rh, i), _end(kw, rw, j)], np.int64)
                begin = ctx.make_const(utils.make_name(f"{node.name}_start"), starts).output[0]
                end = ctx.make_const(utils.make_name(f"{node.name}_end"), ends).output[0]
                slices.append(ctx.make_node("Slice", [source, begin, end, axes, steps]).output[0])
        out_shape = ctx.get_shape(node.output[0])
        out_dtype = ctx.get_dtype(node.output[0])
        ctx.remove_node(node.name)
        ctx.make_node(
            "Concat",
            slices,
            attr={"axis": 3},
            name=node.name,
            outputs=node.output,
            shapes=[out_shape],
            dtypes=[out_dtype],
        )


def _end(kernel: int, rate: int, position: int) -> int:
    """Where the slice of window position `position` ends: the last window's element at that
    position, as an index from the end of the axis (the axis may be unknown until run time)."""
    behind = (kernel - 1 - position) * rate  # elements of the window after this position
    return -behind if behind else _TO_END


def _pad_same(ctx, node, source: str, windows) -> str:
    """TF's SAME padding: the output has ceil(size / stride) windows; the pad they need is split with
    the smaller half first. From the static sizes where known, else computed from Shape."""
    shape = ctx.get_shape(source)
    sizes = [shape[1], shape[2]] if shape and len(shape) == 4 else [-1, -1]
    # At stride 1 the pad is the window's extent less one whatever the size (any size stands in).
    sizes = [1 if stride == 1 else size for size, (_, stride, _) in zip(sizes, windows, strict=True)]
    if all(s is not None and s > 0 for s in sizes):
        halves = [_same_halves(size, *window) for size, window in zip(sizes, windows, strict=True)]
        pads = np.array([0, halves[0][0], halves[1][0], 0, 0, halves[0][1], halves[1][1], 0], np.int64)
        pads_name = ctx.make_const(utils.make_name(f"{node.name}_pads"), pads).output[0]
    else:
        pads_name = _run_time_pads(ctx, node, source, windows)
    return ctx.make_node("Pad", [source, pads_name]).output[0]


def _same_halves(size: int, kernel: int, stride: int, rate: int) -> tuple[int, int]:
    effective = (kernel - 1) * rate + 1
    total = max((-(-size // stride) - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def _run_time_pads(ctx, node, source: str, windows) -> str:
    def const(value) -> str:
        return ctx.make_const(utils.make_name(f"{node.name}_c"), np.array(value, np.int64)).output[0]

    shape = ctx.make_node("Shape", [source]).output[0]
    begins, ends = [], []
    for axis, (kernel, stride, rate) in zip((1, 2), windows, strict=True):
        size = ctx.make_node("Gather", [shape, const([axis])], attr={"axis": 0}).output[0]
        # windows = ceil(size / stride); total = max((windows - 1) * stride + effective - size, 0)
        windows_count = ctx.make_node(
            "Div", [ctx.make_node("Add", [size, const([stride - 1])]).output[0], const([stride])]
        )
        covered = ctx.make_node(
            "Mul", [ctx.make_node("Sub", [windows_count.output[0], const([1])]).output[0], const([stride])]
        )
        needed = ctx.make_node("Add", [covered.output[0], const([(kernel - 1) * rate + 1])])
        total = ctx.make_node("Max", [ctx.make_node("Sub", [needed.output[0], size]).output[0], const([0])])
        begin = ctx.make_node("Div", [total.output[0], const([2])]).output[0]
        begins.append(begin)
        ends.append(ctx.make_node("Sub", [total.output[0], begin]).output[0])
    zero = const([0])
    return ctx.make_node("Concat", [zero, *begins, zero, zero, *ends, zero], attr={"axis": 0}).output[0]
