"""Localisation, TF worker: TensorFlow's value of every ONNX graph value that has a TF counterpart.

tf2onnx names the ONNX values it emits after the TF tensors they stand for, so the frozen graph it
converted is run again here (the same freezing and grappler pass as the export) and each ONNX value
name found in it is fetched. The torch worker then compares them with onnxruntime's.

One exception to the naming: a TF op tf2onnx decomposes keeps its name on the first ONNX node, and
the nodes after it are called `<name>__<n>` (SquaredDifference becomes Sub `x` then Mul `x__6`; Rsqrt
becomes Sqrt then Reciprocal). There the TF tensor `x:0` is the chain's last output, not `x:0`, which
is only a step on the way."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import tensorflow as tf

from pipeline import artifacts
from pipeline.config import ModelConfig
from pipeline.errors import ConversionError, first_line
from pipeline.tf_worker import layout, tf_models

# Nodes tf2onnx adds around an op to change layout or shape: not a step of a decomposition.
_LAYOUT_OPS = {"Transpose", "Reshape", "Identity", "Squeeze", "Unsqueeze", "Cast"}
_STEP_NAME = re.compile(r"^(?P<base>.+)__\d+$")

# v1 control-flow plumbing: its tensors cannot be fetched from outside the loop.
_UNFETCHABLE_OPS = {"Enter", "Exit", "Merge", "Switch", "NextIteration", "LoopCond"}


def localize_tf(cfg: ModelConfig, fmt: str, out: Path, state: dict[str, Any]) -> dict[str, Any]:
    model = tf_models.load(fmt, cfg, out)
    graph = model.frozen_graph()
    if graph is None:
        return {"skipped": f"a {fmt} model has no TensorFlow graph to read intermediate values from"}
    proto = onnx.load(str(out / artifacts.ONNX_MODEL), load_external_data=False)
    counterparts = tf_counterparts(proto.graph)
    feeds = layout.to_tf(artifacts.load_arrays(out / artifacts.INPUTS), cfg.layout)
    feed = [feeds[i.name][0] for i in model.inputs]  # graph.inputs follow model.inputs
    values = graph_values(graph, feed, counterparts)
    path = out / artifacts.LOCALIZE_TF_VALUES
    path.parent.mkdir(exist_ok=True)
    artifacts.save_arrays(path, values)
    return {"tf_values": len(values), "onnx_values": sum(len(n.output) for n in proto.graph.node)}


def tf_counterparts(graph: onnx.GraphProto) -> dict[str, str]:
    """ONNX value name -> the name of the TF tensor it stands for (before graph renames)."""
    counterparts = {o: o for n in graph.node for o in n.output if o}
    steps: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        match = _STEP_NAME.match(node.name)
        if match and node.op_type not in _LAYOUT_OPS:
            steps.setdefault(match["base"], []).append(node)
    for base, chain in steps.items():
        start = f"{base}:0"
        if not any(start in n.input for n in chain):
            continue  # nodes that merely share a prefix, not a decomposition of `base`
        counterparts.pop(start, None)
        inside = {i for n in chain for i in n.input}
        last = [o for n in chain for o in n.output if o not in inside]
        if len(last) == 1:
            counterparts[last[0]] = start
    return counterparts


def graph_values(
    graph: tf_models.FrozenTFGraph, feed: list[np.ndarray], counterparts: dict[str, str]
) -> dict:
    """TF's value for each ONNX value whose counterpart is a tensor of the graph (graph inputs and
    outputs by their renamed names)."""
    tf_graph = tf.Graph()
    with tf_graph.as_default():
        tf.compat.v1.import_graph_def(graph.runnable_graph_def(), name="")
    tensor_of = {new: old for old, new in graph.renames.items()}
    fetches = {}
    for name, counterpart in counterparts.items():
        try:
            tensor = tf_graph.get_tensor_by_name(tensor_of.get(counterpart, counterpart))
        except (KeyError, ValueError):
            continue  # a value tf2onnx made up (a transpose, shape arithmetic): nothing to compare
        if tensor.op.type not in _UNFETCHABLE_OPS:
            fetches[name] = tensor
    feed_dict = {tf_graph.get_tensor_by_name(t): v for t, v in zip(graph.inputs, feed, strict=True)}
    # The graph is already optimized as tf2onnx saw it. Grappler's remapper would fuse grouped
    # convolutions (ConvNeXt) with their bias into a kernel TF's CPU build does not implement.
    config = tf.compat.v1.ConfigProto()
    config.graph_options.rewrite_options.disable_meta_optimizer = True
    with tf.compat.v1.Session(graph=tf_graph, config=config) as session:
        try:
            session.run([tf_graph.get_tensor_by_name(t) for t in graph.outputs], feed_dict)
        except tf.errors.OpError as exc:
            raise ConversionError(
                f"TensorFlow cannot run the graph tf2onnx converted: {first_line(exc)}"
            ) from None

        def fetch(group: dict) -> dict:
            # A tensor that cannot be fetched (inside a loop) fails its whole run: halve until it is alone.
            try:
                return session.run(group, feed_dict)
            except tf.errors.OpError:
                if len(group) == 1:
                    return {}
                items = list(group.items())
                return {**fetch(dict(items[: len(items) // 2])), **fetch(dict(items[len(items) // 2 :]))}

        return fetch(fetches)
