"""Extra onnx2torch converters, one module per ONNX op.

`register()` imports them, which adds them to onnx2torch's registry. Converters return standard
torch modules or torch.fx GraphModules traced from them, so a saved model.pt loads wherever torch and
onnx2torch are installed, without this package; the one exception is Loop (see loop.py). Modules whose
names start with `_` hold shared helpers; `context`, `graph_fixes` and `plugins` (the config's own
converters) drive the conversion.
"""

_MODULES = (
    "pipeline.converters.conv_same",
    "pipeline.converters.conv_transpose",
    "pipeline.converters.global_max_pool",
    "pipeline.converters.loop",
    "pipeline.converters.if_",
    "pipeline.converters.lstm",
    "pipeline.converters.pad",
    "pipeline.converters.reduce_opset18",
    "pipeline.converters.resize_opset18",
    "pipeline.converters.split_opset18",
    "pipeline.converters.quantize_linear",
    "pipeline.converters.dequantize_linear",
    "pipeline.converters.dynamic_quantize_linear",
    "pipeline.converters.reverse_sequence",
    "pipeline.converters.elementwise",
    "pipeline.converters.cast",
    "pipeline.converters.tensor_ops",
    "pipeline.converters.scatter_gather",
    "pipeline.converters.unique",
    "pipeline.converters.pooling",
    "pipeline.converters.resize",
    "pipeline.converters.gru",
    "pipeline.converters.refused_modes",
    "pipeline.converters.dft",
    "pipeline.converters.integer_sums",
)


def register() -> None:
    import importlib

    from pipeline.converters.version_fallback import register_aliases

    for name in _MODULES:
        importlib.import_module(name)  # importing a module twice is a no-op, so this is idempotent
    register_aliases()  # last: an op version with a converter of its own keeps it
