"""Framework-free helpers both workers use: input generation, gradient projections, weight layouts,
ONNX file handling, TF op origins in ONNX names, and the Keras-compile-to-PyTorch mapping."""
