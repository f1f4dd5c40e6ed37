"""What runs in the torch worker (`python -m pipeline.worker torch`): ONNX validation in onnxruntime,
the onnx2torch import with this project's converters, model.py, torch.export, gradients, train.py
and its steps, localisation and the hand-written port check. Nothing here may import TensorFlow
(tests/test_layout.py)."""
