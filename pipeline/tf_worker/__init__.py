"""What runs in the TF worker (`python -m pipeline.worker tf`): loading TF models, reference outputs,
tf2onnx export, TF's gradients, training steps, intermediate values and Keras weights for `verify`.
Imports TensorFlow; nothing here may import torch (tests/test_layout.py)."""
