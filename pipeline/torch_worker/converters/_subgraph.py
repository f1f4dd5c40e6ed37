"""Control-flow bodies (Loop's body, If's branches) converted to torch modules of their own.

A body may read values of the enclosing graph by name (weights, or values computed before the node);
onnx2torch converts whole models only, so those names become extra inputs of the body, after its own.
"""

from __future__ import annotations

import onnx
from onnx import helper
from onnx2torch.onnx_graph import OnnxGraph
from torch import nn

from pipeline.torch_worker.converters import context


def outer_scope_names(body: onnx.GraphProto) -> list[str]:
    """Names the body reads but neither defines nor receives as inputs, in first-use order."""
    defined = {i.name for i in body.input} | {t.name for t in body.initializer}
    defined |= {o for n in body.node for o in n.output}
    names: list[str] = []
    for node in body.node:
        for name in node.input:
            if name and name not in defined and name not in names:
                names.append(name)
        for attr in node.attribute:  # a nested body may read from this graph's enclosing scope too
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                names += [n for n in outer_scope_names(sub) if n not in defined and n not in names]
    # A graph output may be an enclosing value itself (an If branch that returns its input unchanged).
    names += [o.name for o in body.output if o.name not in defined and o.name not in names]
    return names


def convert_body(body: onnx.GraphProto, graph: OnnxGraph) -> tuple[nn.Module, list[str]]:
    """The body as a torch module taking its own inputs, then the enclosing values it reads (whose
    names are returned)."""
    copy = onnx.GraphProto()
    copy.CopyFrom(body)
    outer = outer_scope_names(copy)
    copy.input.extend(_value_info(name, graph) for name in outer)
    model = helper.make_model(copy, opset_imports=context.opset_imports())
    model.ir_version = context.ir_version()
    return context.convert(model), outer


def _value_info(name: str, graph: OnnxGraph) -> onnx.ValueInfoProto:
    if name in graph.initializers:
        tensor = graph.initializers[name].proto
        return helper.make_tensor_value_info(name, tensor.data_type, list(tensor.dims))
    if name in graph.value_info:
        return graph.value_info[name]
    raise NotImplementedError(f"a subgraph reads '{name}' from the enclosing graph, whose type is unknown")
