"""One-node tests of the project's onnx2torch converters and graph fixes against onnxruntime."""

from __future__ import annotations

import io

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from pipeline.torch_worker.converters import context

F = TensorProto.FLOAT


def _model(nodes, inputs, outputs, initializers=(), opset=17):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model, full_check=True)
    return model


def _assert_matches_onnxruntime(model, feeds, atol=1e-5):
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, feeds
    )
    # Through model.pt as the import stage writes it: a converted module must load back.
    buffer = io.BytesIO()
    torch.save(context.convert(model), buffer)
    buffer.seek(0)
    module = torch.load(buffer, weights_only=False)
    with torch.no_grad():
        got = module(*[torch.from_numpy(v) for v in feeds.values()])
    got = got if isinstance(got, (tuple, list)) else (got,)
    assert len(got) == len(expected)
    for want, have in zip(expected, got, strict=True):
        assert tuple(have.shape) == want.shape and have.numpy().dtype == want.dtype
        np.testing.assert_allclose(have.numpy(), want, atol=atol, rtol=1e-5)


RNG = np.random.default_rng(0)


@pytest.mark.parametrize("shape", [(2, 3, 7), (2, 3, 5, 6), (1, 2, 3, 4, 5)])
def test_global_max_pool(shape):
    model = _model(
        [helper.make_node("GlobalMaxPool", ["x"], ["y"])],
        [helper.make_tensor_value_info("x", F, list(shape))],
        [helper.make_tensor_value_info("y", F, [*shape[:2]] + [1] * (len(shape) - 2))],
    )
    _assert_matches_onnxruntime(model, {"x": RNG.normal(size=shape).astype("float32")})


@pytest.mark.parametrize(("batch_axis", "time_axis", "shape"), [(1, 0, (6, 3, 2)), (0, 1, (3, 6, 2, 2))])
def test_reverse_sequence(batch_axis, time_axis, shape):
    model = _model(
        [
            helper.make_node(
                "ReverseSequence", ["x", "lens"], ["y"], batch_axis=batch_axis, time_axis=time_axis
            )
        ],
        [
            helper.make_tensor_value_info("x", F, list(shape)),
            helper.make_tensor_value_info("lens", TensorProto.INT64, [3]),
        ],
        [helper.make_tensor_value_info("y", F, list(shape))],
    )
    feeds = {"x": RNG.normal(size=shape).astype("float32"), "lens": np.array([6, 1, 4], dtype=np.int64)}
    _assert_matches_onnxruntime(model, feeds)


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER"])
@pytest.mark.parametrize(("kernel", "stride"), [(3, 2), (4, 1), (2, 3), (5, 3)])
def test_conv_with_same_auto_pad_and_unknown_spatial_size(auto_pad, kernel, stride):
    weight = numpy_helper.from_array(RNG.normal(size=(4, 3, kernel, kernel)).astype("float32"), "w")
    bias = numpy_helper.from_array(RNG.normal(size=(4,)).astype("float32"), "b")
    node = helper.make_node(
        "Conv",
        ["x", "w", "b"],
        ["y"],
        auto_pad=auto_pad,
        strides=[stride, stride],
    )
    model = _model(
        [node],
        [helper.make_tensor_value_info("x", F, [None, 3, None, None])],
        [helper.make_tensor_value_info("y", F, ["n", 4, "h", "w"])],
        [weight, bias],
    )
    module = context.convert(model)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for size in [(9, 10), (7, 7)]:  # the same module at two input sizes: padding is computed per call
        x = RNG.normal(size=(2, 3, *size)).astype("float32")
        (expected,) = session.run(None, {"x": x})
        with torch.no_grad():
            np.testing.assert_allclose(module(torch.from_numpy(x)).numpy(), expected, atol=1e-5, rtol=1e-5)


def test_conv_with_same_auto_pad_and_dilation_is_refused_clearly():
    weight = numpy_helper.from_array(RNG.normal(size=(4, 3, 3, 3)).astype("float32"), "w")
    node = helper.make_node("Conv", ["x", "w"], ["y"], auto_pad="SAME_UPPER", dilations=[2, 2])
    model = _model(
        [node],
        [helper.make_tensor_value_info("x", F, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", F, [1, 4, 8, 8])],
        [weight],
    )
    with pytest.raises(NotImplementedError, match="dilation"):
        context.convert(model)


def test_plain_conv_still_uses_onnx2torch_converter():
    weight = numpy_helper.from_array(RNG.normal(size=(2, 3, 3, 3)).astype("float32"), "w")
    model = _model(
        [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])],
        [helper.make_tensor_value_info("x", F, [1, 3, 5, 5])],
        [helper.make_tensor_value_info("y", F, [1, 2, 5, 5])],
        [weight],
    )
    _assert_matches_onnxruntime(model, {"x": RNG.normal(size=(1, 3, 5, 5)).astype("float32")})


def test_top_k_outputs_come_back_as_two_tensors():
    model = _model(
        [helper.make_node("TopK", ["x", "k"], ["values", "indices"], axis=-1)],
        [helper.make_tensor_value_info("x", F, [2, 6])],
        [
            helper.make_tensor_value_info("values", F, [2, 3]),
            helper.make_tensor_value_info("indices", TensorProto.INT64, [2, 3]),
        ],
        [numpy_helper.from_array(np.array([3], dtype=np.int64), "k")],
    )
    _assert_matches_onnxruntime(model, {"x": RNG.normal(size=(2, 6)).astype("float32")})


def _loop_model(with_condition: bool):
    """y_{i+1} = tanh(y_i @ W + x_outer) for M steps (or until sum(y) < limit), scanning each y."""
    body_nodes = [
        helper.make_node("MatMul", ["y_in", "w_in"], ["prod"]),
        helper.make_node("Add", ["prod", "x"], ["sum"]),  # x comes from the enclosing graph
        helper.make_node("Tanh", ["sum"], ["y_out"]),
        helper.make_node("ReduceSum", ["y_out"], ["total"], keepdims=0),
        helper.make_node("Greater", ["total", "limit"], ["cond_out"]),
        helper.make_node("Identity", ["y_out"], ["scan"]),
    ]
    body = helper.make_graph(
        body_nodes,
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("y_in", F, [2, 4]),
            helper.make_tensor_value_info("w_in", F, [4, 4]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("y_out", F, [2, 4]),
            helper.make_tensor_value_info("w_in", F, [4, 4]),  # passed straight through
            helper.make_tensor_value_info("scan", F, [2, 4]),
        ],
    )
    loop = helper.make_node(
        "Loop", ["M", "cond" if with_condition else "", "y0", "w"], ["y_final", "w_final", "ys"], body=body
    )
    return _model(
        [loop],
        [helper.make_tensor_value_info(n, F, s) for n, s in (("x", [2, 4]), ("y0", [2, 4]), ("w", [4, 4]))],
        [
            helper.make_tensor_value_info("y_final", F, [2, 4]),
            helper.make_tensor_value_info("w_final", F, [4, 4]),
            helper.make_tensor_value_info("ys", F, ["steps", 2, 4]),
        ],
        [
            numpy_helper.from_array(np.array(5, dtype=np.int64), "M"),
            numpy_helper.from_array(np.array(True), "cond"),
            numpy_helper.from_array(np.array(-1.0, dtype=np.float32), "limit"),
        ],
    )


@pytest.mark.parametrize("with_condition", [True, False])
def test_loop_with_outer_scope_value_pass_through_and_scan_output(with_condition):
    model = _loop_model(with_condition)
    rng = np.random.default_rng(3)
    for shift in (0.0, -1.5):  # with a condition, the second input stops the loop early
        feeds = {
            "x": (rng.normal(size=(2, 4)) + shift).astype("float32"),
            "y0": rng.normal(size=(2, 4)).astype("float32"),
            "w": rng.normal(size=(4, 4)).astype("float32"),
        }
        _assert_matches_onnxruntime(model, feeds)


# --- opset 18 forms -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "op", ["ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL2", "ReduceLogSumExp"]
)
@pytest.mark.parametrize(("axes", "keepdims"), [([1], 1), ([0, 2], 0), ([-1], 0)])
def test_opset18_reduce_with_axes_input(op, axes, keepdims):
    x = RNG.uniform(0.5, 1.5, size=(2, 3, 4)).astype("float32")
    expected_shape = [1 if (a in axes or a - 3 in axes) else d for a, d in enumerate(x.shape)]
    if not keepdims:
        expected_shape = [d for a, d in enumerate(x.shape) if not (a in axes or a - 3 in axes)]
    model = _model(
        [helper.make_node(op, ["x", "axes"], ["y"], keepdims=keepdims)],
        [helper.make_tensor_value_info("x", F, [2, 3, 4])],
        [helper.make_tensor_value_info("y", F, expected_shape)],
        [numpy_helper.from_array(np.array(axes, dtype=np.int64), "axes")],
        opset=18,
    )
    _assert_matches_onnxruntime(model, {"x": x})


def test_opset18_reduce_noop_with_empty_axes_is_identity():
    model = _model(
        [helper.make_node("ReduceMax", ["x"], ["y"], noop_with_empty_axes=1)],
        [helper.make_tensor_value_info("x", F, [2, 3])],
        [helper.make_tensor_value_info("y", F, [2, 3])],
        opset=18,
    )
    _assert_matches_onnxruntime(model, {"x": RNG.normal(size=(2, 3)).astype("float32")})


def test_opset18_split_with_num_outputs():
    model = _model(
        [helper.make_node("Split", ["x"], ["a", "b", "c"], axis=1, num_outputs=3)],
        [helper.make_tensor_value_info("x", F, [2, 6])],
        [helper.make_tensor_value_info(n, F, [2, 2]) for n in "abc"],
        opset=18,
    )
    _assert_matches_onnxruntime(model, {"x": RNG.normal(size=(2, 6)).astype("float32")})


def test_opset18_pad_without_axes():
    model = _model(
        [helper.make_node("Pad", ["x", "pads", "value"], ["y"], mode="constant")],
        [helper.make_tensor_value_info("x", F, [1, 2, 3, 3])],
        [helper.make_tensor_value_info("y", F, [1, 2, 5, 6])],
        [
            numpy_helper.from_array(np.array([0, 0, 1, 2, 0, 0, 1, 1], dtype=np.int64), "pads"),
            numpy_helper.from_array(np.array(0.5, dtype=np.float32), "value"),
        ],
        opset=18,
    )
    _assert_matches_onnxruntime(model, {"x": RNG.normal(size=(1, 2, 3, 3)).astype("float32")})


def test_pad_with_omitted_value_loads_back_from_model_pt():
    # ZeroPadding2D: no `value` input, traced as None; fx's None guard once made model.pt unloadable.
    model = _model(
        [helper.make_node("Pad", ["x", "pads"], ["y"], mode="constant")],
        [helper.make_tensor_value_info("x", F, [1, 2, 3, 3])],
        [helper.make_tensor_value_info("y", F, [1, 2, 5, 6])],
        [numpy_helper.from_array(np.array([0, 0, 1, 2, 0, 0, 1, 1], dtype=np.int64), "pads")],
    )
    _assert_matches_onnxruntime(model, {"x": RNG.normal(size=(1, 2, 3, 3)).astype("float32")})


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_opset18_resize_with_default_new_attributes(mode):
    model = _model(
        [helper.make_node("Resize", ["x", "", "scales"], ["y"], mode=mode)],
        [helper.make_tensor_value_info("x", F, [1, 2, 4, 4])],
        [helper.make_tensor_value_info("y", F, [1, 2, 8, 8])],
        [numpy_helper.from_array(np.array([1, 1, 2, 2], dtype=np.float32), "scales")],
        opset=18,
    )
    _assert_matches_onnxruntime(model, {"x": RNG.normal(size=(1, 2, 4, 4)).astype("float32")})


def test_opset18_resize_with_antialias_and_unknown_sizes_is_refused_clearly():
    # with known sizes antialias is converted (the import sweep's antialias tests); unknown, it is not
    model = _model(
        [helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="linear", antialias=1)],
        [helper.make_tensor_value_info("x", F, [1, 2, None, None])],
        [helper.make_tensor_value_info("y", F, [1, 2, None, None])],
        [numpy_helper.from_array(np.array([1, 1, 0.5, 0.5], dtype=np.float32), "scales")],
        opset=18,
    )
    with pytest.raises(NotImplementedError, match="antialias"):
        context.convert(model)


# --- quantization ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zero_point", "per_axis"), [(np.uint8(128), False), (np.int8(-3), False), (np.int8(0), True)]
)
def test_quantize_then_dequantize(zero_point, per_axis):
    zp_type = TensorProto.UINT8 if zero_point.dtype == np.uint8 else TensorProto.INT8
    scale = np.array([0.02, 0.05, 0.1], dtype=np.float32) if per_axis else np.array(0.03, dtype=np.float32)
    zp = np.full(scale.shape, zero_point, dtype=zero_point.dtype)
    model = _model(
        [
            helper.make_node("QuantizeLinear", ["x", "scale", "zp"], ["q"], axis=1),
            helper.make_node("DequantizeLinear", ["q", "scale", "zp"], ["y"], axis=1),
        ],
        [helper.make_tensor_value_info("x", F, [2, 3, 4])],
        [
            helper.make_tensor_value_info("q", zp_type, [2, 3, 4]),
            helper.make_tensor_value_info("y", F, [2, 3, 4]),
        ],
        [numpy_helper.from_array(scale, "scale"), numpy_helper.from_array(zp, "zp")],
    )
    # values beyond the integer range saturate; exact halves check round-half-to-even
    x = np.concatenate([RNG.normal(scale=4, size=(2, 3, 3)), np.full((2, 3, 1), 0.015)], axis=-1).astype(
        "float32"
    )
    _assert_matches_onnxruntime(model, {"x": x}, atol=0)


def test_dynamic_quantize_linear_matches_onnxruntime():
    model = _model(
        [helper.make_node("DynamicQuantizeLinear", ["x"], ["y", "scale", "zp"])],
        [helper.make_tensor_value_info("x", F, [3, 5])],
        [
            helper.make_tensor_value_info("y", TensorProto.UINT8, [3, 5]),
            helper.make_tensor_value_info("scale", F, []),
            helper.make_tensor_value_info("zp", TensorProto.UINT8, []),
        ],
    )
    for shift in (0.0, 2.0, -2.0):  # mixed signs, all positive, all negative
        _assert_matches_onnxruntime(model, {"x": (RNG.normal(size=(3, 5)) + shift).astype("float32")}, atol=0)


def test_every_converter_module_is_registered():
    from pathlib import Path

    from pipeline.torch_worker import converters

    folder = Path(converters.__file__).parent
    modules = {
        f"pipeline.torch_worker.converters.{p.stem}"
        for p in folder.glob("*.py")
        if not p.stem.startswith("_")
    }
    drivers = {
        "pipeline.torch_worker.converters.context",
        "pipeline.torch_worker.converters.graph_fixes",
        "pipeline.torch_worker.converters.plugins",
        "pipeline.torch_worker.converters.refusal",
        "pipeline.torch_worker.converters.unsigned",
        "pipeline.torch_worker.converters.version_fallback",
    }
    assert modules - drivers == set(converters._MODULES)
