"""Extra tf2onnx handlers for TF ops tf2onnx 1.17 leaves unconverted or gets wrong, registered through
its own `tf_op` decorator. `register()` imports them (once); a handler that replaces one of tf2onnx's
falls back to it when it fails (wrapping.fall_back_to)."""

_MODULES = (
    "pipeline.tf_worker.tf2onnx_handlers.erfc",
    "pipeline.tf_worker.tf2onnx_handlers.math_ops",
    "pipeline.tf_worker.tf2onnx_handlers.patches",
    "pipeline.tf_worker.tf2onnx_handlers.one_hot",
    "pipeline.tf_worker.tf2onnx_handlers.complex_fft",
    "pipeline.tf_worker.tf2onnx_handlers.resize_area",
    "pipeline.tf_worker.tf2onnx_handlers.split_v",
    "pipeline.tf_worker.tf2onnx_handlers.conv_transpose",
)


_registered = False


def register() -> None:
    global _registered
    if _registered:
        return
    import importlib

    import tf2onnx.onnx_opset  # noqa: F401 - tf2onnx's own handlers, before any of these

    from pipeline.tf_worker.tf2onnx_handlers import wrapping

    before = wrapping.snapshot()
    for name in _MODULES:
        importlib.import_module(name)
    wrapping.fall_back_to(before)
    _registered = True
