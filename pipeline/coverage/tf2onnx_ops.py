"""The ONNX ops the export can emit, read from the source of the installed tf2onnx and of this
project's own tf2onnx handlers (pipeline/tf_worker/tf2onnx_handlers/).

tf2onnx is not imported (importing it imports TensorFlow, which must stay out of the torch process):
its source is parsed and every string naming an ONNX op is collected where tf2onnx writes an op type:
the first argument of `make_node`-like calls, `op_type=`/`onnx_op=` keywords, assignments to a node's
`type`/`op_type`, values of op-name tables, and the TF op names its handlers keep as ONNX op names
(`@tf_op(["Abs", ...])`, handlers that pass the op through unchanged).
"""

from __future__ import annotations

import ast
import functools
import importlib.util
from pathlib import Path

_EMITTING_KEYWORDS = {"op_type", "onnx_op"}
_EMITTING_ATTRIBUTES = {"type", "op_type"}


@functools.cache
def onnx_op_names() -> frozenset[str]:
    from onnx import defs

    return frozenset(s.name for s in defs.get_all_schemas_with_history() if s.domain in ("", "ai.onnx"))


@functools.cache
def emitted_onnx_ops() -> frozenset[str]:
    spec = importlib.util.find_spec("tf2onnx")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("tf2onnx is not installed")
    known = onnx_op_names()
    found: set[str] = set()
    sources = [
        Path(next(iter(spec.submodule_search_locations))),
        Path(__file__).parents[1] / "tf_worker" / "tf2onnx_handlers",
    ]
    for path in sorted(p for source in sources for p in source.rglob("*.py")):
        found |= _op_strings(ast.parse(path.read_text(encoding="utf-8"))) & known
    return frozenset(found)


def _op_strings(tree: ast.AST) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = _call_name(node.func)
            if node.args and ("make" in name.lower() or "insert" in name.lower() or name == "tf_op"):
                out |= _strings(node.args[0])
            out |= {s for kw in node.keywords if kw.arg in _EMITTING_KEYWORDS for s in _strings(kw.value)}
        elif isinstance(node, ast.Assign):
            if any(isinstance(t, ast.Attribute) and t.attr in _EMITTING_ATTRIBUTES for t in node.targets):
                out |= _strings(node.value)
        elif isinstance(node, ast.Dict):
            out |= {s for value in node.values if value is not None for s in _strings(value)}
    return out


def _call_name(func: ast.expr) -> str:
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""


def _strings(node: ast.expr) -> set[str]:
    """String constants of an expression: a literal, a list/tuple of them, or either arm of `a if c else b`."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        return {s for element in node.elts for s in _strings(element)}
    if isinstance(node, ast.IfExp):
        return _strings(node.body) | _strings(node.orelse)
    return set()
