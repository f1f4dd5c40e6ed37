"""What the sample inputs exercised of the ONNX graph's data-dependent code (stage validate).

A comparison shows a conversion right only on the code the samples ran: an If branch no sample took,
a mask no sample made active, were never compared. An instrumented copy of the graph runs in
onnxruntime on every sample batch (and the second input shape) and records, for the graph's top
level:

- each If: the branch each run took (its condition);
- each Loop: each run's trip count (an extra scan output of the iteration number, so the count is
  what the Loop did, not what its inputs allowed);
- each mask that selects (a Where's condition, or a mask cast to numbers for a multiply: tf2onnx's
  form of TF's SelectV2) or that a Loop reads (a masked RNN): an equality test of the inputs' values,
  or a bool or integer input such as a padding mask, through casts, logic and reshapes; whether it
  was True somewhere and False somewhere.

A branch no run took, a mask that never masked (never False: Keras's masks are True where a
position counts) and a Loop that never ran its body are warnings when the inputs' values decide them. Conditions decided by input shapes alone (tf2onnx's empty-batch guards)
are recorded without a warning. Control flow inside Loop and If bodies is counted as not recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

_PREFIX = "tf2torch_exercised_"
# Ops a mask passes through unchanged in meaning: casts, logic, reshapes, reductions to any/all.
_MASK_OPS = {
    "Cast",
    "Not",
    "And",
    "Or",
    "Xor",
    "Identity",
    "Unsqueeze",
    "Squeeze",
    "Reshape",
    "Flatten",
    "Expand",
    "Transpose",
    "Slice",
    "Gather",
    "Tile",
    "Concat",
    "ReduceMax",
    "ReduceMin",
    "ReduceSum",
    # two masks combined (Llama's causal and padding masks as a Minimum), any() as a sum above 0, an
    # integer mask read as bool
    "Min",
    "Max",
    "Greater",
    "Less",
    "GreaterOrEqual",
    "LessOrEqual",
}
# Ops whose first input alone carries the mask (the others are shapes, axes, indices).
_DATA_FIRST = {
    "Unsqueeze",
    "Squeeze",
    "Reshape",
    "Expand",
    "Slice",
    "Gather",
    "Tile",
    "ReduceMax",
    "ReduceMin",
    "ReduceSum",
}
_SHAPE_OPS = {"Shape", "Size"}
# Above this the instrumented copy (and its serialized bytes, and a second onnxruntime session) would
# cost more memory than the record is worth.
MAX_INSTRUMENTED_BYTES = 512 << 20


def record(
    model: onnx.ModelProto, feeds: list[dict[str, np.ndarray]], session: Callable[[bytes], Any]
) -> dict | None:
    """{"runs", "nodes", "warnings", "not_recorded"} for the graph's If and Loop nodes and the masks
    it selects by, over `feeds` (one dict per run); None when the graph has none of them. `session`
    makes an onnxruntime session from a serialized model."""
    graph = model.graph
    reading = _GraphReading(graph)
    watched = _watched(graph, reading)
    nested = _nested_control_flow(graph)
    if not watched and not nested:
        return None
    result: dict[str, Any] = {"runs": len(feeds), "nodes": [], "warnings": [], "not_recorded": []}
    if nested:
        result["not_recorded"].append(
            f"{nested} If/Loop node(s) inside Loop or If bodies (only the top level is recorded)"
        )
    if not watched:
        return result
    if model.ByteSize() > MAX_INSTRUMENTED_BYTES:
        result["not_recorded"].append(
            f"{len(watched)} branch, loop and mask node(s): the model is over {MAX_INSTRUMENTED_BYTES >> 20} MB "
            "and an instrumented copy would double validate's memory"
        )
        return result
    instrumented, outputs = _instrumented(model, watched)
    try:
        runner = session(instrumented.SerializeToString())
        names = [name for name, _ in outputs]
        runs = [dict(zip(names, runner.run(names, feed), strict=True)) for feed in feeds]
    except Exception as exc:  # an instrumented graph onnxruntime refuses: say so, never fail the stage
        result["not_recorded"].append(
            f"the instrumented graph did not run: {type(exc).__name__}: {exc}"[:300]
        )
        return result
    for name, (node, what) in outputs:
        values = [np.asarray(run[name]) for run in runs]
        # A Loop's trip count comes from its trip-count and condition inputs (its body's condition
        # reads the carried values those start from); an If's from its condition; a mask from itself.
        decided_by = node.input[:2] if what == "Loop" else node.input[:1] if what == "If" else [what]
        by_values = any(reading.depends_on_values(t) for t in decided_by if t)
        entry, warning = _observed(node, what, values, by_values)
        result["nodes"].append(entry)
        if warning:
            result["warnings"].append(warning)
    return result


def _watched(graph: onnx.GraphProto, reading: _GraphReading) -> list[tuple[int, str]]:
    """(node index, "If" / "Loop" / the mask tensor it reads) for the top level's control flow and masks:
    a mask that selects (a Where's condition, or cast to numbers for a multiply: tf2onnx writes
    TF's SelectV2 that way) and a mask a Loop reads (a masked RNN keeps its state where False)."""
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for t in node.input:
            consumers.setdefault(t, []).append(node)

    def selects(tensor: str) -> bool:
        for user in consumers.get(tensor, []):
            if user.op_type == "Where" and user.input[0] == tensor:
                return True
            if user.op_type == "Cast" and any(u.op_type == "Mul" for u in consumers.get(user.output[0], [])):
                return True
        return False

    watched: list[tuple[int, str]] = []
    for index, node in enumerate(graph.node):
        if node.op_type in ("If", "Loop"):
            watched.append((index, node.op_type))
            if node.op_type == "Loop":  # its inputs, and what its body reads from this graph's scope
                body = next(a.g for a in node.attribute if a.name == "body")
                reads = dict.fromkeys([*node.input[2:], *_outer_reads(body)])
                watched += [(index, t) for t in reads if t and reading.is_mask(t)]
        # A Not of a mask selects the other side of the same choice: the mask itself is recorded.
        elif node.op_type != "Not":
            watched += [(index, t) for t in node.output if t and selects(t) and reading.is_mask(t)]
    return watched


def _observed(node, what: str, values: list[np.ndarray], by_values: bool) -> tuple[dict, str | None]:
    runs = len(values)
    entry: dict[str, Any] = {
        "node": node.name,
        "op": node.op_type,
        "decided_by": "values" if by_values else "shapes",
    }
    warning = None
    if what == "If":
        taken = [bool(v.reshape(-1)[0]) for v in values]
        entry.update(then=sum(taken), **{"else": runs - sum(taken)})
        missing = [b for b, n in (("then", entry["then"]), ("else", entry["else"])) if n == 0]
        if missing and by_values:
            warning = f"the {missing[0]} branch of If '{node.name}' was never exercised ({runs} runs)"
    elif what == "Loop":
        trips = [int(v.shape[0]) for v in values]
        entry.update(trips=trips)
        if max(trips) == 0 and by_values:
            warning = f"Loop '{node.name}' never ran its body ({runs} runs)"
    else:
        entry.update(
            mask=what,
            selected_true=sum(bool(v.astype(bool).any()) for v in values),
            selected_false=sum(bool((~v.astype(bool)).any()) for v in values),
        )
        where = f"the mask '{what}'" + (f" that Loop '{node.name}' reads" if node.op_type == "Loop" else "")
        # Only a mask that never masked is a warning: which side a select's True means is the
        # model's choice, and a guard that is never True (token ids below 0) is no missed path.
        if entry["selected_false"] == 0:
            warning = f"{where} was never False: no sample masked a position ({runs} runs)"
    return entry, warning


def _instrumented(model: onnx.ModelProto, watched: list[tuple[int, str]]):
    """A copy of `model` whose graph also outputs each If's condition, each watched mask, and each
    Loop's stacked iteration numbers; [(output name, (node, what))]."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    graph = copy.graph
    outputs = []
    for number, (index, what) in enumerate(watched):
        original, node = model.graph.node[index], graph.node[index]
        name = f"{_PREFIX}{number}"
        if what == "Loop":
            body = next(a.g for a in node.attribute if a.name == "body")
            step = f"{name}_step"
            body.node.append(helper.make_node("Identity", [body.input[0].name], [step]))
            body.output.append(helper.make_tensor_value_info(step, TensorProto.INT64, []))
            node.output.append(name)
            graph.output.append(helper.make_tensor_value_info(name, TensorProto.INT64, None))
        else:
            condition = node.input[0] if what == "If" else what
            graph.node.append(helper.make_node("Cast", [condition], [name], to=TensorProto.BOOL))
            graph.output.append(helper.make_tensor_value_info(name, TensorProto.BOOL, None))
        outputs.append((name, (original, what)))
    return copy, outputs


def _outer_reads(body: onnx.GraphProto) -> list[str]:
    """The tensors a subgraph reads from the scope around it (ONNX lets a body use outer names)."""
    local = {v.name for v in body.input} | {t.name for t in body.initializer}
    reads = []
    for node in body.node:
        reads += [t for t in node.input if t and t not in local]
        for attr in node.attribute:
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                reads += [t for t in _outer_reads(sub) if t not in local]
        local.update(node.output)
    return list(dict.fromkeys(reads))


def _nested_control_flow(graph: onnx.GraphProto) -> int:
    count = 0
    for node in graph.node:
        for attr in node.attribute:
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                count += sum(n.op_type in ("If", "Loop") for n in sub.node) + _nested_control_flow(sub)
    return count


class _GraphReading:
    """Where a tensor of the top-level graph comes from: the inputs' values, or only their shapes."""

    def __init__(self, graph: onnx.GraphProto):
        self.producer = {out: node for node in graph.node for out in node.output}
        initializers = {t.name for t in graph.initializer}
        self.inputs = {
            v.name: v.type.tensor_type.elem_type for v in graph.input if v.name not in initializers
        }
        self._values: dict[str, bool] = {}

    def depends_on_values(self, tensor: str) -> bool:
        """Whether `tensor` changes with the inputs' values; a path through Shape or Size carries only
        sizes."""
        if tensor in self._values:
            return self._values[tensor]
        self._values[tensor] = False  # cycles cannot occur in ONNX; this only stops re-walks
        if tensor in self.inputs:
            found = True
        else:
            producer = self.producer.get(tensor)
            found = (
                producer is not None
                and producer.op_type not in _SHAPE_OPS
                and any(self.depends_on_values(t) for t in producer.input if t)
            )
        self._values[tensor] = found
        return found

    def is_mask(self, tensor: str) -> bool:
        """A boolean condition read off the inputs' values as a mask: an equality test (Keras's
        mask_zero and Masking), or a bool or integer input (a padding mask), through _MASK_OPS
        (casts, logic, reshapes, any/all, comparisons of a mask with a constant)."""
        if tensor in self.inputs:
            return self.inputs[tensor] not in (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16)
        producer = self.producer.get(tensor)
        if producer is None:
            return False
        if producer.op_type == "Equal":
            return any(self.depends_on_values(t) for t in producer.input)
        if producer.op_type not in _MASK_OPS:
            return False
        followed = producer.input[:1] if producer.op_type in _DATA_FIRST else producer.input
        return any(self.is_mask(t) for t in followed if t)
