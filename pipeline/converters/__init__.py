"""Extra onnx2torch converters, one module per ONNX op.

`register()` imports them, which adds them to onnx2torch's registry. Each converter returns a
torch.fx GraphModule built from standard torch modules, so a saved model.pt loads wherever torch
and onnx2torch are installed, without this package.
"""

_MODULES = (
    "pipeline.converters.conv_same",
    "pipeline.converters.global_max_pool",
    "pipeline.converters.loop",
    "pipeline.converters.lstm",
    "pipeline.converters.opset18",
    "pipeline.converters.quantization",
    "pipeline.converters.reverse_sequence",
)


def register() -> None:
    import importlib

    for name in _MODULES:
        importlib.import_module(name)  # importing a module twice is a no-op, so this is idempotent
