"""Rewrites of an ONNX graph before onnx2torch imports it.

onnx2torch maps each graph output to the node that produces it, not to the value, so it goes wrong
when an output
- comes from a node with several outputs (TopK's values and indices): it returns the node's tuple;
- is not produced by a node at all (a Loop body passing an input or an outer value straight through);
- appears twice, or shares its node with another output: it keeps one of them.
Routing such outputs through their own Identity node gives each output a node of its own.

onnx2torch also names each module after its node, and torch.fx writes `self.<name>(...)`: a node
named like a Python keyword (tf2onnx names a logical-and node `and`) makes code that does not compile.
"""

from __future__ import annotations

import keyword

import onnx
from onnx import helper


def rename_keyword_nodes(graph: onnx.GraphProto) -> int:
    """Nodes named like a Python keyword (`and`, `if`, `not`, ...) get a trailing underscore, in
    subgraphs too; returns how many were renamed."""
    taken = {node.name for node in graph.node}
    renamed = 0
    for node in graph.node:
        if keyword.iskeyword(node.name.replace(".", "/")):
            name = node.name + "_"
            while name in taken:
                name += "_"
            taken.add(name)
            node.name = name
            renamed += 1
        for attr in node.attribute:
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                renamed += rename_keyword_nodes(sub)
    return renamed


def route_graph_outputs(graph: onnx.GraphProto) -> int:
    """Give every graph output its own single-output producer; return how many Identity nodes were added."""
    producers = {out: node for node in graph.node for out in node.output}
    claimed: set[int] = set()  # producer nodes already giving one output
    added = 0
    for index, output in enumerate(graph.output):
        node = producers.get(output.name)
        # an omitted optional output ('') still takes a place in the converted module's result tuple
        single = node is not None and len(node.output) == 1
        if single and id(node) not in claimed:
            claimed.add(id(node))
            continue
        source = output.name
        if node is not None and not single:
            # keep the output's name: the multi-output node now writes to an inner name
            source = f"{output.name}__value"
            _rename_value(graph, output.name, source)
            target = output.name
        else:
            # an input, initializer, outer value or a repeated output: the output takes a new name
            target = f"{output.name}__output{index}"
            output.name = target
        graph.node.append(helper.make_node("Identity", [source], [target], name=f"{target}__identity"))
        producers[target] = graph.node[-1]
        claimed.add(id(graph.node[-1]))
        added += 1
    return added


def _rename_value(graph: onnx.GraphProto, old: str, new: str) -> None:
    for node in graph.node:
        for i, name in enumerate(node.output):
            if name == old:
                node.output[i] = new
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new
