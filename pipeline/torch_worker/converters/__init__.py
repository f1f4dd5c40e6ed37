"""Extra onnx2torch converters, one module per ONNX op.

`register()` imports them, which adds them to onnx2torch's registry. Converters return standard
torch modules or torch.fx GraphModules traced from them, so a saved model.pt loads wherever torch and
onnx2torch are installed, without this package; the one exception is Loop (see loop.py). Modules whose
names start with `_` hold shared helpers; `context`, `graph_fixes` and `plugins` (the config's own
converters) drive the conversion.
"""

_MODULES = (
    "pipeline.torch_worker.converters.conv_same",
    "pipeline.torch_worker.converters.conv_transpose",
    "pipeline.torch_worker.converters.global_max_pool",
    "pipeline.torch_worker.converters.loop",
    "pipeline.torch_worker.converters.if_",
    "pipeline.torch_worker.converters.lstm",
    "pipeline.torch_worker.converters.pad",
    "pipeline.torch_worker.converters.reduce_opset18",
    "pipeline.torch_worker.converters.resize_opset18",
    "pipeline.torch_worker.converters.split_opset18",
    "pipeline.torch_worker.converters.quantize_linear",
    "pipeline.torch_worker.converters.dequantize_linear",
    "pipeline.torch_worker.converters.dynamic_quantize_linear",
    "pipeline.torch_worker.converters.reverse_sequence",
    "pipeline.torch_worker.converters.elementwise",
    "pipeline.torch_worker.converters.cast",
    "pipeline.torch_worker.converters.tensor_ops",
    "pipeline.torch_worker.converters.scatter_gather",
    "pipeline.torch_worker.converters.unique",
    "pipeline.torch_worker.converters.pooling",
    "pipeline.torch_worker.converters.resize",
    "pipeline.torch_worker.converters.gru",
    "pipeline.torch_worker.converters.refused_modes",
    "pipeline.torch_worker.converters.dft",
    "pipeline.torch_worker.converters.integer_sums",
    "pipeline.torch_worker.converters.sequences",
    "pipeline.torch_worker.converters.non_max_suppression",
)


def register() -> None:
    import importlib

    from pipeline.torch_worker.converters.version_fallback import register_aliases

    for name in _MODULES:
        importlib.import_module(name)  # importing a module twice is a no-op, so this is idempotent
    register_aliases()  # last: an op version with a converter of its own keeps it
