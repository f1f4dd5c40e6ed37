"""A transposed convolution whose requested output is longer than the full transposed convolution
(tf.nn.conv2d_transpose with VALID and an output_shape up to stride - 1 longer, as VOLO's "fold"
writes; SAME with a kernel shorter than the stride): tf2onnx 1.17 turns the difference into a
negative end pad, which ONNX forbids (shape inference: "pads must not contain negative values"). In
TF the extra rows at the end are ones no input window reaches: zeros. That is ONNX's
`output_padding` (it lengthens the output at the end; it must stay below the stride, as TF's excess
does). This runs after tf2onnx's own handler and moves each negative end pad there."""

from pipeline.tf_worker.tf2onnx_handlers.wrapping import run_after


def _negative_pads_as_output_padding(ctx, node) -> None:
    if node.type != "ConvTranspose" or "pads" not in node.attr:
        return
    pads = list(node.get_attr_value("pads"))
    spatial = len(pads) // 2
    if all(p >= 0 for p in pads):
        return
    extra = [0] * spatial
    for axis in range(spatial):
        total = pads[axis] + pads[axis + spatial]
        if total < 0:  # longer than the full transposed convolution: no pad, zeros at the end
            pads[axis], pads[axis + spatial], extra[axis] = 0, 0, -total
    node.set_attr("pads", pads)
    node.set_attr("output_padding", extra)


for _op in ("Conv2DBackpropInput", "Conv3DBackpropInputV2"):
    run_after(_op, _negative_pads_as_output_padding)
