"""Where two frameworks' outputs part ways: per-tensor errors over the ONNX graph and the first node
whose output is out of tolerance while everything it reads is within. NumPy only.

A node is the culprit when at least one of its outputs fails while the nearest compared values
upstream of each of its inputs all pass (graph inputs and initializers count as passing: both sides
read the same ones). Values one side does not have (TF tensors tf2onnx invented, shape arithmetic)
are looked through, so the test still applies across them. Layouts: TF computes image tensors NHWC
where the ONNX graph holds them NCHW; a value whose shape is a permutation of the reference's is
compared after moving its axes back, and the record says which permutation was applied.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.compare import compare_arrays
from pipeline.config import ResolvedTolerance


@dataclass(frozen=True)
class GraphNode:
    name: str
    op_type: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


def align(reference: np.ndarray, candidate: np.ndarray) -> tuple[np.ndarray, tuple[int, ...] | None] | None:
    """The candidate in the reference's layout and the permutation applied (None: none needed), or
    None when no axis permutation makes the shapes equal."""
    # Channels-first to channels-last first: that is what tf2onnx does to image tensors.
    channels_last = (0, *range(2, candidate.ndim), 1)
    if candidate.shape == reference.shape:
        # An image with as many channels as rows and columns fits either way: keep the better match.
        moved = np.transpose(candidate, channels_last) if candidate.ndim >= 3 else candidate
        if moved.shape == reference.shape and _max_abs(reference, moved) < _max_abs(reference, candidate):
            return moved, channels_last
        return candidate, None
    if [d for d in candidate.shape if d != 1] == [d for d in reference.shape if d != 1]:
        return candidate.reshape(reference.shape), None  # only unit axes differ: [] against [1]
    if candidate.ndim != reference.ndim or sorted(candidate.shape) != sorted(reference.shape):
        return None
    orders = [channels_last] + [
        p for p in itertools.permutations(range(candidate.ndim)) if p != channels_last
    ]
    fits = [p for p in orders if tuple(candidate.shape[i] for i in p) == reference.shape]
    if not fits:
        return None
    # Equal dimensions leave several permutations possible; the one that matches best is meant.
    best = min(fits, key=lambda p: _max_abs(reference, np.transpose(candidate, p)))
    return np.transpose(candidate, best), best


def _max_abs(a: np.ndarray, b: np.ndarray) -> float:
    with np.errstate(invalid="ignore"):
        diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    return float(np.nanmax(diff)) if diff.size else 0.0


def tensor_errors(
    reference: Mapping[str, np.ndarray],
    candidate: Mapping[str, np.ndarray],
    tolerance: Callable[[str], ResolvedTolerance],
) -> dict[str, dict[str, Any]]:
    """Per value present on both sides: its error statistics and whether it is within tolerance.
    Values whose dtypes or shapes the two sides represent differently are left out (tf2onnx computes
    shape arithmetic in int64 where TF uses int32, for one); a real fault shows in the values after."""
    errors: dict[str, dict[str, Any]] = {}
    for name, ref in reference.items():
        if name not in candidate:
            continue
        cand = candidate[name]
        if ref.dtype != cand.dtype or not np.issubdtype(ref.dtype, np.number):
            continue  # shape arithmetic in int64 on one side and int32 on the other: not comparable
        aligned = align(ref, cand)
        if aligned is None:
            continue
        values, permutation = aligned
        stats = compare_arrays(ref, values, tolerance(name))
        errors[name] = {
            "passed": stats["passed"],
            "max_abs_diff": stats["max_abs_diff"],
            "max_rel_diff": stats["max_rel_diff"],
            "mismatch_fraction": stats["mismatch_fraction"],
            "shape": list(ref.shape),
            "permutation": list(permutation) if permutation else None,
        }
    return errors


def find_culprit(
    nodes: Sequence[GraphNode], errors: Mapping[str, dict[str, Any]], graph_outputs: Sequence[str]
) -> dict[str, Any] | None:
    """The first node, in topological order, that turns passing inputs into a failing output, with
    the path of compared values from a graph input through it to a failing graph output."""
    graph = _Graph(nodes, errors)
    for node in nodes:
        failing = [o for o in node.outputs if o in errors and not errors[o]["passed"]]
        if not failing:
            continue
        upstream = graph.compared_inputs(node)
        if all(errors[v]["passed"] for v in upstream):
            return {
                "node": node.name,
                "op_type": node.op_type,
                "inputs": [{"value": v, **errors[v]} for v in upstream],
                "outputs": [{"value": o, **errors[o]} for o in node.outputs if o in errors],
                "path": graph.path_through(node, failing[0], set(graph_outputs)),
            }
    return None


class _Graph:
    def __init__(self, nodes: Sequence[GraphNode], errors: Mapping[str, dict[str, Any]]):
        self.nodes, self.errors = nodes, errors
        self.producer = {out: node for node in nodes for out in node.outputs}
        self.consumers: dict[str, list[GraphNode]] = {}
        for node in nodes:
            for value in node.inputs:
                self.consumers.setdefault(value, []).append(node)
        self._upstream: dict[str, tuple[str, ...]] = {}

    def compared_upstream(self, value: str) -> tuple[str, ...]:
        """The nearest compared values a value depends on (itself, if it was compared)."""
        if value in self.errors:
            return (value,)
        if value not in self._upstream:
            node = self.producer.get(value)
            self._upstream[value] = self.compared_inputs(node) if node else ()
        return self._upstream[value]

    def compared_inputs(self, node: GraphNode) -> tuple[str, ...]:
        return tuple(dict.fromkeys(v for i in node.inputs if i for v in self.compared_upstream(i)))

    def path_through(self, culprit: GraphNode, failing: str, graph_outputs: set[str]) -> list[dict]:
        # Backwards: from the culprit, the compared input with the largest error, up to an input.
        before: list[str] = []
        node: GraphNode | None = culprit
        while node is not None:
            upstream = [v for v in self.compared_inputs(node) if v not in before]
            if not upstream:
                break
            value = max(upstream, key=lambda v: self.errors[v].get("max_abs_diff", 0.0))
            before.append(value)
            node = self.producer.get(value)
        chain = [*reversed(before), failing, *self._forward(failing, graph_outputs)]
        return [
            {
                "value": value,
                "node": self.producer[value].name if value in self.producer else None,
                "op_type": self.producer[value].op_type if value in self.producer else "input",
                "max_abs_diff": self.errors[value].get("max_abs_diff"),
                "passed": self.errors[value]["passed"],
            }
            for value in chain
        ]

    def _forward(self, start: str, graph_outputs: set[str]) -> list[str]:
        """Compared values on a shortest path from `start` to a graph output (breadth first)."""
        previous: dict[str, str] = {}
        frontier = [start]
        while frontier:
            reached = next((v for v in frontier if v in graph_outputs), None)
            if reached is not None:
                chain = []
                while reached != start:
                    chain.append(reached)
                    reached = previous[reached]
                return [v for v in reversed(chain) if v in self.errors]
            following = []
            for value in frontier:
                for node in self.consumers.get(value, ()):
                    for out in node.outputs:
                        if out not in previous and out != start:
                            previous[out] = value
                            following.append(out)
            frontier = following
        return []
