"""tf2torch: convert TensorFlow models to PyTorch through ONNX, verifying every stage.

The Python API (pipeline/api.py): `pipeline.convert`, `pipeline.verify`, `pipeline.batch`,
`pipeline.localize` and `pipeline.read_result` return typed results; user mistakes raise
`pipeline.PipelineError`.

This package must stay importable without TensorFlow or torch: the frameworks are imported only
inside the worker processes (see pipeline/worker.py). The API is imported on first use, so that
`python -m pipeline.worker` does not load it.
"""

__version__ = "0.1.0"

# The Python API's names, in the order its reference page lists them (scripts/build_docs.py).
API_NAMES = (
    "convert",
    "verify",
    "batch",
    "localize",
    "read_result",
    "ConversionResult",
    "BatchResult",
    "BatchRow",
)
_RECORDS = {"Status", "StageRecord", "ComparisonRow"}
_ERRORS = {"PipelineError", "UsageError", "ConfigError"}
__all__ = ["__version__", *API_NAMES, *sorted(_RECORDS | _ERRORS)]


def __getattr__(name: str):
    import importlib

    for module, names in (
        ("pipeline.api", API_NAMES),
        ("pipeline.records", _RECORDS),
        ("pipeline.errors", _ERRORS),
    ):
        if name in names:
            return getattr(importlib.import_module(module), name)
    raise AttributeError(f"module 'pipeline' has no attribute '{name}'")
