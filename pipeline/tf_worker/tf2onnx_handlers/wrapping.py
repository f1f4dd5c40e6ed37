"""tf2onnx's own handler of an op, run after a fix-up of the node: for ops tf2onnx converts, but not
for every input (negative one-hot indices, a split's run-time rest)."""

from collections.abc import Callable

from tf2onnx.handler import tf_op


def run_before(op: str, prepare: Callable, min_version: int = 1) -> None:
    """Registers, at each opset version tf2onnx has a handler of `op` for (from `min_version` on), a
    handler that calls `prepare(ctx, node)` and then tf2onnx's own."""
    originals = {
        version: handlers[op][0]
        for version, handlers in enumerate(tf_op.get_opsets()[""])
        if op in handlers and version >= min_version
    }
    for version, original in originals.items():
        tf_op.register_handler(_then(prepare, original), version, [op], "", {})


def _then(prepare: Callable, original: Callable) -> Callable:
    def handler(ctx, node, **kwargs):
        prepare(ctx, node)
        return original(ctx, node, **kwargs)

    return handler
