"""The tf2onnx-suite sweep: tf2onnx's own backend tests through onnxruntime, the importer and the
project's whole chain (pipeline/coverage/tf2onnx_suite.py).

`make sweep` runs a deterministic eighth of the suite (CI runs it) and `make sweep-full` all of it;
these tests run one test of upstream's per class of fix through the real sweep, check that
docs/coverage.md's table names only tests the suite has, and check the fallback to tf2onnx's own
handler that keeps the project's export from losing a node plain tf2onnx converts."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from cli_runner import REPO

from pipeline.coverage import tf2onnx_suite
from pipeline.coverage.suite_source import suite_dir

# One upstream test per class fixed in issue 33: constant outputs, the matrix diagonal family
# (com.microsoft Range, empty ranges), ConvTranspose with run-time weights and with output_shape,
# resize to a size computed at run time, crop_and_resize (0-d Slice starts in a Loop), fractional
# ResizeArea; and test_where_string, a known failure (strings), which must stay listed.
SLICE = [
    "test_range_const",
    "test_matrix_set_diag_v3",
    "test_Conv2DBackpropInput_const_strided",
    "test_Conv3DBackpropInputV2_strided",
    "test_resize_bilinear_with_non_const2",
    "test_crop_and_resize_linear",
    "test_resize_area",
    "test_where_string",
]


@pytest.fixture(scope="module")
def sliced(tmp_path_factory):
    out = tmp_path_factory.mktemp("suite") / "outcomes.json"
    args = ["--opsets", "17", "18", "--json", str(out)] + [arg for name in SLICE for arg in ("-k", name)]
    code = tf2onnx_suite.main(args)
    return code, [tf2onnx_suite.SuiteCase(**c) for c in json.loads(out.read_text())]


def test_each_fixed_class_passes_the_whole_chain_at_both_opsets(sliced):
    code, cases = sliced
    assert code == 0, [c for c in cases if c.unexpected]
    for name in SLICE:
        mine = [c for c in cases if c.test == name]
        assert {c.opset for c in mine} == {17, 18}, name
        assert all(c.counted for c in mine), [c for c in mine if not c.counted]
        if name == "test_where_string":
            assert all(c.known and c.chain != "passed" for c in mine)
        else:
            assert all(c.chain == "passed" for c in mine), [c for c in mine if c.chain != "passed"]
    assert not [c for c in cases if c.lost_by_export]


def test_docs_list_only_tests_the_suite_has():
    names = set(re.findall(r"def (test_\w+)\(", (suite_dir() / "test_backend.py").read_text()))
    known = tf2onnx_suite.known_failures()
    assert known, "docs/coverage.md has no table of known tf2onnx-suite failures"
    # parameterized tests are named after their method with the parameter set's index appended
    stray = [key for key in known if not {key.split("#")[0], re.sub(r"_\d+$", "", key.split("#")[0])} & names]
    assert not stray, f"docs/coverage.md lists tests test_backend.py does not have: {stray}"


def test_a_listed_case_that_passes_and_an_unlisted_failure_both_fail_the_sweep():
    def case(chain, known=None, upstream="passed"):
        return tf2onnx_suite.SuiteCase("t", "t", 17, [], upstream, "passed", chain, known=known)

    assert case("passed", known="was broken").unexpected
    assert case("import failed").unexpected
    assert not case("import failed", known="strings").unexpected
    # a case tf2onnx's own export fails is not counted, whatever the chain does
    assert not case("export failed", upstream="mismatch").unexpected
    assert case("export failed").lost_by_export


def test_the_comparison_is_the_tests_own():
    strict = {
        "rtol": 1e-7,
        "atol": 1e-5,
        "mtol": None,
        "check_value": True,
        "check_shape": True,
        "check_dtype": True,
    }
    x = np.array([1.0, 2.0], np.float32)
    assert tf2onnx_suite.suite_mismatch([x + 1e-6], [x], strict) is None
    assert "max abs error" in tf2onnx_suite.suite_mismatch([x + 1e-3], [x], strict)
    assert "dtype" in tf2onnx_suite.suite_mismatch([x.astype(np.float64)], [x], strict)
    assert tf2onnx_suite.suite_mismatch([x.astype(np.float64)], [x], {**strict, "check_dtype": False}) is None
    # mtol clips both sides before comparing (large values the test does not care about)
    big = np.array([1e9, 1.0], np.float32)
    assert tf2onnx_suite.suite_mismatch([big * np.float32([2, 1])], [big], {**strict, "mtol": 100.0}) is None
    assert tf2onnx_suite.suite_mismatch([big * np.float32([2, 1])], [big], strict) is not None
    # TFLite pads strings with NUL bytes; the test compares them without
    assert (
        tf2onnx_suite.suite_mismatch([np.array([b"ab"], object)], [np.array([b"ab\x00"], object)], strict)
        is None
    )


FALLBACK = """
import json
import numpy as np
import tensorflow as tf
import onnxruntime as ort
import pipeline.tf_worker.stages  # registers the project's handlers, as the worker does
from pipeline.tf_worker import tf_to_onnx
from pipeline.tf_worker.tf2onnx_handlers import wrapping
from tf2onnx.handler import tf_op

# A project handler for an op tf2onnx converts, failing on the node: tf2onnx's own must take over.
before = wrapping.snapshot()

def broken(ctx, node, **kwargs):
    raise ValueError("this project handler cannot")

for version in range(len(before)):
    if "Softplus" in before[version]:
        tf_op.register_handler(broken, version, ["Softplus"], "", {})
wrapping.fall_back_to(before)

graph = tf.Graph()
with graph.as_default():
    x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
    tf.identity(tf.nn.softplus(x) * 2.0, name="y")
weights = {}
optimized = tf_to_onnx.optimize_tf_graph(graph.as_graph_def(), ["x:0"], ["y:0"], weights)
proto = tf_to_onnx.graph_def_to_onnx(optimized, weights, ["x:0"], ["y:0"], {}, 17)
feed = np.linspace(-3, 3, 8, dtype=np.float32).reshape(2, 4)
got = ort.InferenceSession(proto.SerializeToString()).run(None, {"x:0": feed})[0]
print(json.dumps({
    "error": float(np.abs(got - 2 * np.log1p(np.exp(feed))).max()),
    "fallbacks": wrapping.FALLBACKS,
    "ops": [n.op_type for n in proto.graph.node],
}))
"""


def test_a_failing_project_handler_falls_back_to_tf2onnx_s_own_and_says_so():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(
        [sys.executable, "-c", FALLBACK], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["error"] < 1e-5 and "Softplus" in result["ops"]
    (fallback,) = result["fallbacks"]
    assert fallback["op"] == "Softplus" and "this project handler cannot" in fallback["reason"]
    assert "the project's Softplus handler failed" in done.stderr
