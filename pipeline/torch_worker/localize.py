"""Localisation, torch worker: every intermediate value of the ONNX graph from onnxruntime, from the
onnx2torch module and (when the TF worker wrote them) from TensorFlow, compared value by value on the
first input batch; the first node whose output leaves tolerance is named for each pair."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from pipeline import artifacts
from pipeline.config import ModelConfig, resolve_tolerance
from pipeline.errors import PipelineError, first_line
from pipeline.torch_worker.divergence import GraphNode, find_culprit, tensor_errors
from pipeline.torch_worker.onnx_stages import onnxruntime_session, to_torch


def localize(cfg: ModelConfig, fmt: str, out: Path, state: dict[str, Any]) -> dict[str, Any]:
    model = onnx.load(str(out / artifacts.ONNX_MODEL))
    feed = {name: batch[0] for name, batch in artifacts.load_arrays(out / artifacts.INPUTS).items()}
    nodes = graph_nodes(model.graph)
    onnx_values = onnxruntime_values(model, feed)
    pairs: dict[str, Any] = {}

    compare = _Pairing(feed, nodes, [o.name for o in model.graph.output], cfg)
    tf_file = out / artifacts.LOCALIZE_TF_VALUES
    if tf_file.exists():
        pairs["tf_vs_onnx"] = compare("tf_vs_onnx", artifacts.load_arrays(tf_file), onnx_values)
    else:
        pairs["tf_vs_onnx"] = {"status": "skipped", "reason": "no TensorFlow values (see the TF side)"}

    try:
        torch_values = torch_module_values(model, feed, cfg)
    except PipelineError as exc:
        pairs["onnx_vs_torch"] = {"status": "skipped", "reason": f"the model does not import: {exc.message}"}
    else:
        pairs["onnx_vs_torch"] = compare("onnx_vs_torch", onnx_values, torch_values)
    return {"pairs": pairs}


def graph_nodes(graph: onnx.GraphProto) -> list[GraphNode]:
    """The top-level nodes in their (topological) order; Loop bodies are compared as their node."""
    return [
        GraphNode(n.name or n.output[0], n.op_type, tuple(n.input), tuple(o for o in n.output if o))
        for n in graph.node
    ]


def onnxruntime_values(model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every node output of the top-level graph, computed by onnxruntime."""
    marked = onnx.ModelProto()
    marked.CopyFrom(model)
    present = {o.name for o in marked.graph.output}
    wanted = [o for n in marked.graph.node for o in n.output if o and o not in present]
    marked.graph.output.extend(onnx.ValueInfoProto(name=name) for name in wanted)
    session = onnxruntime_session(marked.SerializeToString())
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feed), strict=True))


def torch_module_values(model: onnx.ModelProto, feed: dict[str, np.ndarray], cfg: ModelConfig):
    """Every ONNX value the onnx2torch module computes, by ONNX name (from each module's mapping)."""
    import torch
    from torch import fx

    module = to_torch(model, cfg.converters, attach_onnx_mapping=True)
    captured: dict[str, np.ndarray] = {}

    class Capture(fx.Interpreter):
        def run_node(self, node):
            result = super().run_node(node)
            if node.op == "call_module":
                mapping = getattr(self.module.get_submodule(node.target), "onnx_mapping", None)
                values = result if isinstance(result, (tuple, list)) else (result,)
                for name, value in zip(mapping.outputs if mapping else (), values, strict=False):
                    if isinstance(value, torch.Tensor):
                        captured[name] = value.detach().cpu().numpy()
            return result

    args = [torch.from_numpy(np.ascontiguousarray(feed[i.name])) for i in model.graph.input if i.name in feed]
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Capture(module).run(*args)
    return captured


class _Pairing:
    """Compares two sides' values over one graph. The graph inputs are the same on every side: added
    to both, they start the path at an input."""

    def __init__(self, feed: dict[str, np.ndarray], nodes: list[GraphNode], outputs: list[str], cfg):
        self.feed, self.nodes, self.outputs, self.cfg = feed, nodes, outputs, cfg

    def __call__(self, pair: str, reference: dict, candidate: dict) -> dict[str, Any]:
        errors = tensor_errors(
            {**self.feed, **reference},
            {**self.feed, **candidate},
            lambda name: resolve_tolerance(self.cfg.tolerances, pair, name),
        )
        try:
            culprit = find_culprit(self.nodes, errors, self.outputs)
        except Exception as exc:  # noqa: BLE001 - a localisation bug must not hide the verdict
            return {"status": "error", "error": f"{type(exc).__name__}: {first_line(exc)}"}
        producer = {o: n for n in self.nodes for o in n.outputs}
        order = [*self.feed, *(v for n in self.nodes for v in n.outputs)]
        return {
            "status": "diverges" if culprit else "no divergence",
            "compared": len(errors),
            "failing": sum(not e["passed"] for e in errors.values()),
            "culprit": culprit,
            # Every compared value in graph order: the error along the graph.
            "values": [
                {
                    "value": v,
                    "node": producer[v].name if v in producer else None,
                    "op_type": producer[v].op_type if v in producer else "input",
                    **errors[v],
                }
                for v in order
                if v in errors
            ],
        }
