"""One-node tests of the LSTM converter against onnxruntime, for every attribute combination it accepts."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from onnx2torch import convert

from pipeline.torch_worker.converters import register

register()

SEQ, BATCH, FEATURES, HIDDEN = 5, 3, 4, 6


def _lstm_model(direction: str, layout: int, with_h: bool, with_c: bool, outputs: int, bias: bool = True):
    rng = np.random.default_rng(0)
    dirs = 2 if direction == "bidirectional" else 1
    x_shape = [BATCH, SEQ, FEATURES] if layout else [SEQ, BATCH, FEATURES]
    state_shape = [BATCH, dirs, HIDDEN] if layout else [dirs, BATCH, HIDDEN]
    inits = [
        numpy_helper.from_array(rng.normal(size=(dirs, 4 * HIDDEN, FEATURES)).astype("float32"), "W"),
        numpy_helper.from_array(rng.normal(size=(dirs, 4 * HIDDEN, HIDDEN)).astype("float32"), "R"),
    ]
    if bias:
        inits.append(numpy_helper.from_array(rng.normal(size=(dirs, 8 * HIDDEN)).astype("float32"), "B"))
    inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, x_shape)]
    node_inputs = ["X", "W", "R", "B" if bias else "", "", "h0" if with_h else "", "c0" if with_c else ""]
    for name, present in (("h0", with_h), ("c0", with_c)):
        if present:
            inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, state_shape))
    while node_inputs[-1] == "":
        node_inputs.pop()
    out_names = ["Y", "Y_h", "Y_c"][:outputs]
    y_shape = [BATCH, SEQ, dirs, HIDDEN] if layout else [SEQ, dirs, BATCH, HIDDEN]
    out_shapes = [y_shape, state_shape, state_shape][:outputs]
    node = helper.make_node(
        "LSTM", node_inputs, out_names, hidden_size=HIDDEN, direction=direction, layout=layout
    )
    graph = helper.make_graph(
        [node],
        "lstm",
        inputs,
        [
            helper.make_tensor_value_info(n, TensorProto.FLOAT, s)
            for n, s in zip(out_names, out_shapes, strict=True)
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    onnx.checker.check_model(model, full_check=True)
    return model, [i.name for i in inputs], [x_shape] + [state_shape] * (len(inputs) - 1)


@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize(("with_h", "with_c"), [(False, False), (True, True), (True, False), (False, True)])
def test_lstm_matches_onnxruntime(direction, with_h, with_c):
    model, names, shapes = _lstm_model(direction, 0, with_h, with_c, outputs=3)
    rng = np.random.default_rng(1)
    feeds = {n: rng.normal(size=s).astype("float32") for n, s in zip(names, shapes, strict=True)}
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, feeds
    )
    with torch.no_grad():
        got = convert(model)(*[torch.from_numpy(feeds[n]) for n in names])
    assert len(got) == 3
    for want, have in zip(expected, got, strict=True):
        assert have.shape == want.shape
        np.testing.assert_allclose(have.numpy(), want, atol=1e-5, rtol=1e-4)


def test_lstm_single_output_without_bias():
    model, names, shapes = _lstm_model("forward", 0, False, False, outputs=1, bias=False)
    x = np.random.default_rng(2).normal(size=shapes[0]).astype("float32")
    (expected,) = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"X": x}
    )
    with torch.no_grad():
        got = convert(model)(torch.from_numpy(x))
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-5, rtol=1e-4)


def test_lstm_weights_are_trainable_parameters():
    model, _, _ = _lstm_model("bidirectional", 0, False, False, outputs=3)
    module = convert(model)
    params = sum(p.numel() for p in module.parameters())
    dirs = 2
    assert params == dirs * (4 * HIDDEN * (FEATURES + HIDDEN) + 8 * HIDDEN)


def test_lstm_with_sequence_lens_is_refused_clearly():
    model, _, _ = _lstm_model("forward", 0, False, False, outputs=3)
    del model.graph.node[0].input[:]
    model.graph.node[0].input.extend(["X", "W", "R", "B", "lens"])
    model.graph.input.append(helper.make_tensor_value_info("lens", TensorProto.INT32, [BATCH]))
    with pytest.raises(NotImplementedError, match="sequence_lens"):
        convert(model)


def test_lstm_batch_first_layout_is_refused_clearly():
    # onnxruntime cannot run layout=1 either, so the converter could not be checked against it.
    model, _, _ = _lstm_model("forward", 1, False, False, outputs=3)
    with pytest.raises(NotImplementedError, match="layout=1"):
        convert(model)
