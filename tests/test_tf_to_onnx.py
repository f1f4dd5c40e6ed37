"""The lean tf2onnx export path (pipeline/tf_worker/tf_to_onnx.py) and the protobuf-arena shim it relies on.

TensorFlow runs in subprocesses: this pytest process imports torch, and both in one process crash.
"""

import json
import os
import subprocess
import sys

from cli_runner import REPO


def run_python(code: str, *args: str) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# x -> MatMul(w) -> + b -> Relu, with w large enough to be hidden from grappler and b small enough not to be.
SMALL_GRAPH = """
import json, logging, sys
from collections import OrderedDict
import numpy as np
import tensorflow as tf
import onnxruntime as ort
import pipeline.tf_worker.stages  # registers the project's tf2onnx shims, as the worker does
from pipeline.tf_worker import tf_to_onnx

rng = np.random.default_rng(0)
w = rng.standard_normal((64, 32)).astype(np.float32)
b = rng.standard_normal(32).astype(np.float32)
graph = tf.Graph()
with graph.as_default():
    x = tf.compat.v1.placeholder(tf.float32, [None, 64], name="x")
    weights = tf.constant(w, name="w")
    y = tf.nn.relu(tf.matmul(x, tf.identity(weights, name="w_read")) + tf.constant(b, name="b"), name="y")
graph_def = graph.as_graph_def()
feed = rng.standard_normal((3, 64)).astype(np.float32)
expected = np.maximum(feed @ w + b, 0)
result = {}

kept_apart = {}
optimized = tf_to_onnx.optimize_tf_graph(graph_def, ["x:0"], ["y:0"], kept_apart)
nodes = {n.name: n for n in optimized.node}
result["w_op"], result["b_op"] = nodes["w"].op, nodes["b"].op
result["kept_apart"] = sorted(kept_apart)
result["w_kept"] = kept_apart["w"].tobytes() == w.tobytes()
runnable = {n.name: n for n in tf_to_onnx.with_weights(optimized, kept_apart).node}
result["w_runnable"] = tf.make_ndarray(runnable["w"].attr["value"].tensor).tobytes() == w.tobytes()

if sys.argv[1] == "failing-optimizer":
    from tf2onnx.optimizer import IdentityOptimizer
    from tf2onnx.optimizer.optimizer_base import GraphOptimizerBase

    class Broken(GraphOptimizerBase):
        def _optimize(self, graph):
            raise RuntimeError("deliberately broken optimizer")

    optimizers = OrderedDict([("broken", Broken), ("remove_identity", IdentityOptimizer)])
else:
    optimizers = None
warnings = []
handler = logging.Handler()
handler.emit = lambda record: warnings.append(record.getMessage())
logging.getLogger("tf2torch").addHandler(handler)
proto = tf_to_onnx.graph_def_to_onnx(optimized, kept_apart, ["x:0"], ["y:0"], {"x:0": "x", "y:0": "y"}, 17, optimizers=optimizers)
session = ort.InferenceSession(proto.SerializeToString())
got = session.run(["y"], {"x": feed})[0]
result["max_diff"] = float(np.abs(got - expected).max())
result["warnings"] = warnings
result["consumed"] = kept_apart == {}
print(json.dumps(result))
"""


def test_large_constants_travel_beside_the_graph_and_convert_unchanged():
    result = run_python(SMALL_GRAPH, "default")
    # Grappler saw the weight as a placeholder; the small bias stayed a constant it could fold.
    assert (result["w_op"], result["b_op"]) == ("Placeholder", "Const")
    assert result["kept_apart"] == ["w"]
    assert result["w_kept"] and result["w_runnable"]
    assert result["max_diff"] < 1e-5
    assert result["warnings"] == []
    assert result["consumed"]  # the conversion let go of the weights once tf2onnx had them


def test_a_failing_tf2onnx_optimizer_falls_back_to_upstream_error_recovery():
    result = run_python(SMALL_GRAPH, "failing-optimizer")
    assert result["max_diff"] < 1e-5  # the conversion still completes, without the broken optimizer
    assert len(result["warnings"]) == 1
    assert "deliberately broken optimizer" in result["warnings"][0]
    assert "error recovery" in result["warnings"][0]


# One 40 MB constant node; tf2onnx refreshes its NodeProto after each optimizer pass.
UPDATE_PROTO_GROWTH = """
import json, sys
import numpy as np
from pipeline.tf_worker.compat import patch_tf2onnx_node_update_proto
if sys.argv[1] == "patched":
    patch_tf2onnx_node_update_proto()
from tf2onnx.graph import Graph

def rss_mb():
    return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) / 1024

graph = Graph([], opset=17)
node = graph.make_const("weights", np.ones(10_000_000, dtype=np.float32))
node.update_proto()
before = rss_mb()
for _ in range(10):
    node.update_proto()
print(json.dumps({"growth_mb": rss_mb() - before}))
"""


def test_refreshing_a_node_proto_does_not_keep_old_copies_of_its_weights():
    # Without the shim every refresh leaves a 40 MB copy in the protobuf arena (upb backend).
    unpatched = run_python(UPDATE_PROTO_GROWTH, "unpatched")["growth_mb"]
    patched = run_python(UPDATE_PROTO_GROWTH, "patched")["growth_mb"]
    assert unpatched > 300, "tf2onnx or protobuf changed: the shim may no longer be needed"
    assert patched < 80


# A Keras model exported the way the export stage does it; `broken` makes the in-memory freezer fail
# so that the SavedModel route has to take over. The model is dropped after the export, so the
# reference run afterwards also exercises rebuilding it.
KERAS_EXPORT = """
import json, logging, sys, tempfile
from pathlib import Path
import numpy as np
import onnxruntime as ort
import pipeline.tf_worker.stages  # registers the project's tf2onnx shims, as the worker does
from pipeline.config import ModelConfig
from pipeline.tf_worker import tf_models
from pipeline.tf_worker import tf_to_onnx

if sys.argv[1] == "broken":
    def broken(func, every_variable=False):
        raise RuntimeError("deliberately broken in-memory freeze")
    tf_to_onnx.freeze_function = broken
warnings = []
handler = logging.Handler()
handler.emit = lambda record: warnings.append(record.getMessage())
logging.getLogger("tf2torch").addHandler(handler)
model = tf_models.load("zoo", ModelConfig(model="demo.cnn"), Path(tempfile.mkdtemp()))
proto = model.to_onnx(17)
dropped = model._model is None
x = np.random.default_rng(0).standard_normal((2, 28, 28, 1)).astype(np.float32)
got = ort.InferenceSession(proto.SerializeToString()).run(None, {"image": x})[0]
expected = model.run({"image": x})["output_0"]
print(json.dumps({"max_diff": float(np.abs(got - expected).max()), "dropped": dropped,
                  "initializers": len(proto.graph.initializer), "warnings": warnings}))
"""


def test_a_keras_model_is_frozen_in_memory_and_dropped_after_the_export():
    result = run_python(KERAS_EXPORT, "default")
    assert result["warnings"] == []
    assert result["dropped"]  # the weights are not kept twice while they are converted
    assert result["initializers"] >= 4  # conv and dense kernels and biases
    assert result["max_diff"] < 1e-5  # and the rebuilt model computes what the ONNX model computes


def test_the_savedmodel_route_takes_over_when_freezing_in_memory_fails():
    result = run_python(KERAS_EXPORT, "broken")
    assert len(result["warnings"]) == 1
    assert "deliberately broken in-memory freeze" in result["warnings"][0]
    assert "SavedModel" in result["warnings"][0]
    assert result["max_diff"] < 1e-5


UNTAG = """
import json
import numpy as np
import tensorflow as tf
from pipeline.tf_worker import tf_to_onnx

w = np.arange(600, dtype=np.float32).reshape(20, 30)
inner = np.arange(400, dtype=np.float32)
graph_def = tf.compat.v1.GraphDef()
for container, name, tag in ((graph_def.node, "w", b"tf2torch-weight:0"),
                             (graph_def.library.function.add().node_def, "inner", b"tf2torch-weight:1")):
    node = container.add(name=name, op="Const")
    node.attr["dtype"].type = tf.float32.as_datatype_enum
    node.attr["value"].tensor.dtype = tf.float32.as_datatype_enum
    node.attr["value"].tensor.tensor_content = tag
weights = tf_to_onnx._untag(graph_def, {b"tf2torch-weight:0": w, b"tf2torch-weight:1": inner})
kept = graph_def.library.function[0].node_def[0].attr["value"].tensor.tensor_content
print(json.dumps({"weights": sorted(weights), "w_op": graph_def.node[0].op,
                  "inner_back": kept == inner.tobytes()}))
"""


def test_tagged_weights_become_placeholders_or_get_their_bytes_back_inside_functions():
    result = run_python(UNTAG)
    assert result == {"weights": ["w"], "w_op": "Placeholder", "inner_back": True}
