"""Extra tf2onnx handlers for TF ops tf2onnx 1.17 leaves unconverted, registered through its own
`tf_op` decorator. `register()` imports them; importing twice is a no-op."""

_MODULES = (
    "pipeline.tf_worker.tf2onnx_handlers.erfc",
    "pipeline.tf_worker.tf2onnx_handlers.math_ops",
    "pipeline.tf_worker.tf2onnx_handlers.patches",
    "pipeline.tf_worker.tf2onnx_handlers.one_hot",
    "pipeline.tf_worker.tf2onnx_handlers.complex_fft",
    "pipeline.tf_worker.tf2onnx_handlers.resize_area",
    "pipeline.tf_worker.tf2onnx_handlers.split_v",
)


def register() -> None:
    import importlib

    for name in _MODULES:
        importlib.import_module(name)
