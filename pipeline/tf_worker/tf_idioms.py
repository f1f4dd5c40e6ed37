"""Rewrites of TF idioms that have no ONNX form into TF ops that do, on the frozen GraphDef before
tf2onnx converts it.

The sign-bit test `Less(BitwiseAnd(Bitcast(x, int32), INT32_MIN), 0)`: Keras 3 computes
`keras.ops.signbit` this way and uses it in `keras.ops.argmax` / `argmin` on floats (to order -0.0
before 0.0), so every Keras argmax fails export on the Bitcast, which ONNX cannot express. The same
bit is `x < 0 or (x == 0 and 1 / x < 0)` (1 / -0.0 is -inf); only a NaN's sign differs, which
argmax never reads.

The lowered `tf.switch_case`: freezing lowers the functional Case op into `_SwitchN` (route a value
to the taken branch) and `Merge` (take the value of the branch that ran), which tf2onnx cannot convert.
Every branch is side-effect free once frozen, so the rewrite lets each branch read the values
directly and replaces each Merge by a chain of selects on the branch index (the last branch also
takes an index out of range, as TF's default branch does).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

_INT32_MIN = np.iinfo(np.int32).min


def rewrite_idioms(graph_def, output_tensors: list[str]):
    """Returns the rewritten GraphDef (pruned to the outputs when something changed) and a count."""
    nodes = {n.name: n for n in graph_def.node}
    rewritten = 0
    for node in list(graph_def.node):
        source = _signbit_source(node, nodes)
        if source is not None:
            _write_signbit(graph_def, node, source)
            rewritten += 1
    rewritten += _unlower_switch_case(graph_def, output_tensors)
    if rewritten:
        keep = sorted({t.split(":")[0] for t in output_tensors})
        graph_def = tf.compat.v1.graph_util.extract_sub_graph(graph_def, keep)
    return graph_def, rewritten


def _signbit_source(node, nodes) -> str | None:
    """The float tensor whose sign bit `node` tests, or None when `node` is not that idiom."""
    if node.op != "Less" or len(node.input) != 2:
        return None
    masked, zero = (nodes.get(_name(i)) for i in node.input)
    if masked is None or masked.op != "BitwiseAnd" or not _is_constant(zero, 0):
        return None
    cast = next(
        (
            nodes.get(_name(i))
            for i in masked.input
            if nodes.get(_name(i)) is not None and nodes[_name(i)].op == "Bitcast"
        ),
        None,
    )
    mask = next((nodes.get(_name(i)) for i in masked.input if nodes.get(_name(i)) is not cast), None)
    if cast is None or not _is_constant(mask, _INT32_MIN):
        return None
    if tf.as_dtype(cast.attr["T"].type) != tf.float32 or tf.as_dtype(cast.attr["type"].type) != tf.int32:
        return None
    return cast.input[0]


def _write_signbit(graph_def, node, source: str) -> None:
    prefix = node.name + "/signbit"
    zero = graph_def.node.add(name=f"{prefix}/zero", op="Const")
    zero.attr["dtype"].type = tf.float32.as_datatype_enum
    zero.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(np.float32(0.0)))

    def add(name: str, op: str, inputs: list[str], typed: bool = True):
        new = graph_def.node.add(name=f"{prefix}/{name}", op=op)
        new.input.extend(inputs)
        if typed:
            new.attr["T"].type = tf.float32.as_datatype_enum
        return new.name

    negative = add("negative", "Less", [source, zero.name])
    is_zero = add("is_zero", "Equal", [source, zero.name])
    reciprocal = add("reciprocal", "Reciprocal", [source])
    negative_reciprocal = add("negative_reciprocal", "Less", [reciprocal, zero.name])
    negative_zero = add("negative_zero", "LogicalAnd", [is_zero, negative_reciprocal], typed=False)
    node.op = "LogicalOr"
    del node.input[:]
    node.input.extend([negative, negative_zero])
    node.attr.clear()


def _is_constant(node, value) -> bool:
    if node is None or node.op != "Const":
        return False
    array = tf.make_ndarray(node.attr["value"].tensor)
    return array.size == 1 and array.reshape(()) == value


def _name(tensor: str) -> str:
    return tensor.lstrip("^").split(":")[0]


def _unlower_switch_case(graph_def, output_tensors: list[str]) -> int:
    nodes = {n.name: n for n in graph_def.node}
    switches = {n.name: n for n in graph_def.node if n.op == "_SwitchN"}
    if not switches:
        return 0
    wanted = {_name(t) for t in output_tensors}
    merges = [n for n in graph_def.node if n.op == "Merge" and _feeds(n.name, graph_def, wanted)]
    for merge in merges:
        branches = [_branch_of(i, nodes, switches) for i in merge.input if not i.startswith("^")]
        if any(b is None for b in branches):
            continue
        index = switches[branches[0][0]].input[1]
        values = [i for i in merge.input if not i.startswith("^")]
        order = sorted(range(len(values)), key=lambda i: branches[i][1])
        chosen = values[order[-1]]
        for position in reversed(order[:-1]):
            k = branches[position][1]
            constant = graph_def.node.add(name=f"{merge.name}/branch_{k}", op="Const")
            constant.attr["dtype"].type = tf.int32.as_datatype_enum
            constant.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(np.int32(k)))
            taken = graph_def.node.add(name=f"{merge.name}/is_{k}", op="Equal", input=[index, constant.name])
            taken.attr["T"].type = tf.int32.as_datatype_enum
            select = graph_def.node.add(
                name=f"{merge.name}/select_{k}", op="SelectV2", input=[taken.name, values[position], chosen]
            )
            select.attr["T"].CopyFrom(merge.attr["T"])
            chosen = select.name
        dtype = merge.attr["T"]
        merge.op = "Identity"
        del merge.input[:]
        merge.input.append(chosen)
        merge.attr.clear()
        merge.attr["T"].CopyFrom(dtype)
    # each branch reads the routed value itself; control edges from the switches go
    for node in graph_def.node:
        inputs = []
        for i in node.input:
            source = _name(i)
            if source in switches:
                if not i.startswith("^"):
                    inputs.append(switches[source].input[0])
            else:
                inputs.append(i)
        del node.input[:]
        node.input.extend(inputs)
    return len(merges)


def _feeds(name: str, graph_def, wanted: set[str]) -> bool:
    """Whether the node's data output reaches one of the wanted nodes (through data edges)."""
    consumers: dict[str, list[str]] = {}
    for node in graph_def.node:
        for i in node.input:
            if not i.startswith("^"):
                consumers.setdefault(_name(i), []).append(node.name)
    seen, frontier = set(), [name]
    while frontier:
        current = frontier.pop()
        if current in wanted:
            return True
        for nxt in consumers.get(current, []):
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    return False


def _branch_of(tensor: str, nodes, switches) -> tuple[str, int] | None:
    """(switch name, branch number) of the branch computing `tensor`, found through its inputs and
    control inputs (a branch of constants hangs on its switch's pivot by a control edge)."""
    seen, frontier = set(), [tensor]
    while frontier:
        current = frontier.pop()
        source = _name(current)
        if source in switches:
            port = current.lstrip("^").split(":")
            return source, int(port[1]) if len(port) > 1 else 0
        if source in seen or source not in nodes:
            continue
        seen.add(source)
        frontier.extend(nodes[source].input)
    return None
