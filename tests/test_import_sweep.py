"""The import sweep: ONNX's own backend node tests through the import stage's path (torch side only).

The sweep runs in this (torch) process: it imports neither TensorFlow nor tf2onnx (the op list is read
from tf2onnx's source). docs/coverage.md lists every test that does not pass, with its reason."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from pipeline.coverage import import_sweep, node_tests
from pipeline.coverage.tf2onnx_ops import emitted_onnx_ops
from pipeline.errors import UnsupportedOpsError
from pipeline.torch_worker.onnx_stages import to_torch

COVERAGE_PAGE = Path(__file__).resolve().parent.parent / "docs" / "coverage.md"


@pytest.fixture(scope="module")
def outcomes():
    return import_sweep.sweep((17, 18))


def test_op_list_is_read_from_tf2onnx_not_written_by_hand():
    ops = emitted_onnx_ops()
    assert {"Conv", "MatMul", "Resize", "LSTM", "Loop", "ScatterND", "GatherND", "Einsum"} <= ops
    # ops tf2onnx 1.17 never writes stay out, so their tests are not counted
    assert not {"Col2Im", "STFT", "LayerNormalization", "Gelu", "AffineGrid"} & ops


@pytest.mark.parametrize("opset", [17, 18])
def test_sweep_passes_the_target_share(outcomes, opset):
    counts = Counter(o.status for o in outcomes if o.opset == opset)
    applicable = counts["passed"] + counts["failed"] + counts["refused"]
    assert applicable > 600, counts  # the suite is there: a broken collection cannot pass
    assert import_sweep.share_passed(outcomes, opset) >= import_sweep.TARGET_SHARE, import_sweep.summary_line(
        outcomes, opset
    )


def test_every_test_that_does_not_pass_is_listed_in_the_coverage_page(outcomes):
    # the import sweep's section only: the tf2onnx-suite table further down names tests too
    text = COVERAGE_PAGE.read_text(encoding="utf-8").split("### The export sweep")[0]
    listed = set(re.findall(r"^\| `(test_[a-z0-9_]+)` \|", text, flags=re.MULTILINE))
    missing = sorted({o.name for o in outcomes if o.status in ("failed", "refused")} - listed)
    assert not missing, (
        f"add these to the import sweep table of docs/coverage.md with their reason: {missing}"
    )
    stale = sorted(listed - {o.name for o in outcomes if o.status in ("failed", "refused")})
    assert not stale, f"these pass now; remove them from the table of docs/coverage.md: {stale}"


def test_not_applicable_tests_say_why(outcomes):
    reasons = [o.detail for o in outcomes if o.status == "not_applicable"]
    assert reasons and all(r.startswith(("invalid at opset", "onnxruntime")) for r in reasons)


def test_version_fallback_covers_greater_or_equal_16_with_the_opset_12_converter(outcomes):
    from pipeline.torch_worker.converters import register
    from pipeline.torch_worker.converters.version_fallback import ALIASES

    register()
    aliased = {(k.operation_type, k.version): v for k, v in ALIASES.items()}
    assert aliased[("GreaterOrEqual", 16)] == 12 and aliased[("LessOrEqual", 16)] == 12
    # the suite shows the semantics match: every alias in reach has passing tests at opset 17
    for (op, version), _ in aliased.items():
        if version <= 17:
            passing = [o for o in outcomes if o.opset == 17 and op in o.op_types and o.status == "passed"]
            assert passing, f"no passing sweep test proves the {op} {version} alias"


def test_unsigned_values_compute_in_int64_and_come_back_unsigned():
    u32 = TensorProto.UINT32
    graph = helper.make_graph(
        [helper.make_node("Div", ["a", "b"], ["q"]), helper.make_node("Greater", ["q", "b"], ["g"])],
        "g",
        [helper.make_tensor_value_info("a", u32, [3])],
        [
            helper.make_tensor_value_info("q", u32, [3]),
            helper.make_tensor_value_info("g", TensorProto.BOOL, [3]),
        ],
        [numpy_helper.from_array(np.array([3, 3, 3], np.uint32), "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    quotient, greater = to_torch(model)(torch.tensor([4_000_000_000, 7, 2], dtype=torch.uint32))
    assert quotient.dtype == torch.uint32 and greater.dtype == torch.bool
    assert quotient.to(torch.int64).tolist() == [1_333_333_333, 2, 0]
    assert greater.tolist() == [True, False, False]


def test_a_node_no_converter_takes_names_every_such_node_with_its_count_and_reason():
    nodes = [
        # SAME_LOWER with a stride past the kernel would extend the output before its start
        helper.make_node("ConvTranspose", ["x", "w"], [f"y{i}"], auto_pad="SAME_LOWER", strides=[3, 3])
        for i in range(2)
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
        [helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, None) for i in range(2)],
        [numpy_helper.from_array(np.ones((1, 1, 1, 1), np.float32), "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(UnsupportedOpsError) as caught:
        to_torch(model)
    message = str(caught.value)
    assert "stage 'import'" in message and "ConvTranspose (opset 17)" in message
    assert "extended before its start" in message
    assert list(caught.value.ops.values()) == [2]


def test_rewrite_turns_later_inputs_into_initializers():
    case = next(c for c in node_tests.backend_cases() if c.name == "test_clip_splitbounds")
    test = node_tests.rewrite(case, 17)
    assert [i.name for i in test.model.graph.input] == ["x"]
    assert {t.name for t in test.model.graph.initializer} == {"min", "max"}
    assert test.not_applicable is None


def test_the_committed_support_matrix_is_current(outcomes):
    """docs/ops.md and support_matrix.json (what `tf2torch ops` prints) match a fresh build: the ONNX
    side from this sweep, the TF side from the export sweep's catalogue (listed by a TF process)."""
    from pipeline.coverage import support_matrix

    fresh = support_matrix.build(outcomes, support_matrix.list_catalogue())
    committed = support_matrix.load()
    assert committed["onnx_ops"] == fresh["onnx_ops"], "run `make ops-page`"
    assert committed["tf_ops"] == fresh["tf_ops"], "run `make ops-page`"
    assert support_matrix.PAGE.read_text(encoding="utf-8") == support_matrix.markdown(committed)


def test_a_converter_that_crashes_is_named_with_its_node_not_a_keyerror(tmp_path):
    # a user converter (config `converters:`) that looks up a value the graph does not have
    plugin = tmp_path / "buggy.py"
    plugin.write_text(
        "from pipeline.torch_worker.converters.plugins import replace_converter\n\n\n"
        "@replace_converter('Relu', 14)\n"
        "def relu(node, graph):\n"
        "    return graph.initializers['no_such_value']\n"
    )
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Relu", ["y"], ["z"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    with pytest.raises(UnsupportedOpsError) as caught:
        to_torch(model, converters=[str(plugin)])
    message = str(caught.value)
    assert (
        "stage 'import'" in message
        and "Relu (opset 14): the converter failed (KeyError: 'no_such_value')" in message
    )
    assert list(caught.value.ops.values()) == [2]
