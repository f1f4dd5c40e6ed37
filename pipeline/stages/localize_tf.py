"""Localisation, TF worker: TensorFlow's value of every ONNX graph value that has a TF counterpart.

tf2onnx names the ONNX values it emits after the TF tensors they stand for, so the frozen graph it
converted is run again here (the same freezing and grappler pass as the export) and each ONNX value
name found in it is fetched. The torch worker then compares them with onnxruntime's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import tensorflow as tf

from pipeline import artifacts
from pipeline.config import ModelConfig
from pipeline.stages import tf_models

# v1 control-flow plumbing: its tensors cannot be fetched from outside the loop.
_UNFETCHABLE_OPS = {"Enter", "Exit", "Merge", "Switch", "NextIteration", "LoopCond"}


def localize_tf(cfg: ModelConfig, fmt: str, out: Path, state: dict[str, Any]) -> dict[str, Any]:
    model = tf_models.load(fmt, cfg.model, cfg.signature, cfg.inputs, cfg.outputs, cfg.seed, out)
    graph = model.frozen_graph()
    if graph is None:
        return {"skipped": f"a {fmt} model has no TensorFlow graph to read intermediate values from"}
    proto = onnx.load(str(out / artifacts.ONNX_MODEL), load_external_data=False)
    names = [o for n in proto.graph.node for o in n.output if o]
    feeds = artifacts.load_arrays(out / artifacts.INPUTS)
    feed = [feeds[i.name][0] for i in model.inputs]  # graph.inputs follow model.inputs
    values = graph_values(graph, feed, names)
    path = out / artifacts.LOCALIZE_TF_VALUES
    path.parent.mkdir(exist_ok=True)
    artifacts.save_arrays(path, values)
    return {"tf_values": len(values), "onnx_values": len(names)}


def graph_values(graph: tf_models.FrozenTFGraph, feed: list[np.ndarray], names: list[str]) -> dict:
    """The value of each name that is a tensor of the graph (or a renamed graph input or output)."""
    tf_graph = tf.Graph()
    with tf_graph.as_default():
        tf.compat.v1.import_graph_def(graph.graph_def, name="")
    tensor_of = {new: old for old, new in graph.renames.items()}
    fetches = {}
    for name in names:
        try:
            tensor = tf_graph.get_tensor_by_name(tensor_of.get(name, name))
        except (KeyError, ValueError):
            continue  # a value tf2onnx made up (a transpose, shape arithmetic): nothing to compare
        if tensor.op.type not in _UNFETCHABLE_OPS:
            fetches[name] = tensor
    feed_dict = {tf_graph.get_tensor_by_name(t): v for t, v in zip(graph.inputs, feed, strict=True)}
    with tf.compat.v1.Session(graph=tf_graph) as session:
        try:
            return session.run(fetches, feed_dict)
        except tf.errors.OpError:
            # One tensor that cannot be fetched fails the lot; keep the ones that can.
            kept = {}
            for name, tensor in fetches.items():
                try:
                    kept[name] = session.run(tensor, feed_dict)
                except tf.errors.OpError:
                    continue
            return kept
