"""How the project's handlers sit on tf2onnx's: `run_before` runs tf2onnx's own handler of an op after a
fix-up of the node (negative one-hot indices, a split's run-time rest), `run_after` fixes up what it
wrote (a transposed convolution's negative pads); `prefer_upstream` leaves the
nodes of a pattern tf2onnx converts to tf2onnx (an FFT whose only use is ComplexAbs); `fall_back_to` makes every
project handler of an op tf2onnx converts too hand the node to tf2onnx's handler when it fails, so the
project's export never loses a node plain tf2onnx converts. Each such node is recorded in FALLBACKS
(the export stage reports them; the validate stage then checks what tf2onnx wrote)."""

import logging
from collections.abc import Callable

from tf2onnx.handler import tf_op

log = logging.getLogger(__name__)

# {"node", "op", "reason"} per node a project handler failed on since the last reset()
FALLBACKS: list[dict[str, str]] = []
_PER_CONVERSION: list[set] = []  # handlers' own notes about the graph being converted


def reset() -> None:
    """Before each conversion: forget the last one's fallbacks and notes."""
    FALLBACKS.clear()
    for notes in _PER_CONVERSION:
        notes.clear()


def per_conversion(notes: set) -> set:
    """`notes`, emptied by every reset()."""
    _PER_CONVERSION.append(notes)
    return notes


def run_before(op: str, prepare: Callable, min_version: int = 1) -> None:
    """Registers, at each opset version tf2onnx has a handler of `op` for (from `min_version` on), a
    handler that calls `prepare(ctx, node)` and then tf2onnx's own."""
    for version, original in _handlers_of(op, min_version).items():
        tf_op.register_handler(_then(prepare, original), version, [op], "", {})


def run_after(op: str, finish: Callable, min_version: int = 1) -> None:
    """Registers, at each opset version tf2onnx has a handler of `op` for (from `min_version` on), a
    handler that calls tf2onnx's own and then `finish(ctx, node)` on the node it wrote."""
    for version, original in _handlers_of(op, min_version).items():
        tf_op.register_handler(_followed_by(finish, original), version, [op], "", {})


def _handlers_of(op: str, min_version: int) -> dict[int, Callable]:
    return {
        version: handlers[op][0]
        for version, handlers in enumerate(tf_op.get_opsets()[""])
        if op in handlers and version >= min_version
    }


def _followed_by(finish: Callable, original: Callable) -> Callable:
    def handler(ctx, node, **kwargs):
        result = original(ctx, node, **kwargs)
        finish(ctx, node)
        return result

    return handler


def _then(prepare: Callable, original: Callable) -> Callable:
    def handler(ctx, node, **kwargs):
        prepare(ctx, node)
        return original(ctx, node, **kwargs)

    return handler


def snapshot() -> list[dict]:
    """tf2onnx's ONNX-domain handlers per opset version, as registered now."""
    return [dict(handlers) for handlers in tf_op.get_opsets()[""]]


def fall_back_to(before: list[dict]) -> None:
    """Wraps each handler registered since `before` for an op that `before` could convert at that
    version (its handler of the highest version up to it) with a fallback to that handler."""
    for version, handlers in enumerate(tf_op.get_opsets()[""]):
        for op, (handler, kwargs) in list(handlers.items()):
            upstream = _effective(before, op, version)
            if upstream is None or upstream[0] is handler:
                continue
            tf_op.register_handler(_or_else(op, handler, upstream[0]), version, [op], "", kwargs)


def _effective(before: list[dict], op: str, version: int):
    for v in range(min(version, len(before) - 1), -1, -1):
        if op in before[v]:
            return before[v][op]
    return None


def _or_else(op: str, project: Callable, upstream: Callable) -> Callable:
    def handler(ctx, node, **kwargs):
        name = node.name
        try:
            return project(ctx, node, **kwargs)
        except Exception as exc:  # noqa: BLE001 - any failure: tf2onnx's own conversion of the node
            reason = (
                f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}"
            )
            log.warning(
                "the project's %s handler failed on %s (%s); tf2onnx's own handler converts it",
                op,
                name,
                reason,
            )
            FALLBACKS.append({"node": name, "op": op, "reason": reason})
            return upstream(ctx, ctx.get_node_by_name(name) or node, **kwargs)

    return handler


def effective_now(op: str, version: int):
    """tf2onnx's (handler, kwargs) for `op` at `version` as registered now: read it before a project
    handler of the same op is registered."""
    return _effective(snapshot(), op, version)


def prefer_upstream(op: str, when: Callable, upstream, versions: list[int]) -> None:
    """At each version, the node goes to tf2onnx's own handler (`upstream`, from effective_now) when
    `when(ctx, node)` holds, else to the project's handler registered there now."""
    for version in versions:
        project, kwargs = tf_op.get_opsets()[""][version][op]
        tf_op.register_handler(_either(when, upstream[0], project), version, [op], "", kwargs)


def _either(when: Callable, upstream: Callable, project: Callable) -> Callable:
    def handler(ctx, node, **kwargs):
        return (upstream if when(ctx, node) else project)(ctx, node, **kwargs)

    return handler
