"""tf2torch: convert TensorFlow models to PyTorch through ONNX, verifying every stage.

This package must stay importable without TensorFlow or torch: the frameworks are imported only
inside the worker processes (see pipeline/worker.py).
"""

__version__ = "0.1.0"
