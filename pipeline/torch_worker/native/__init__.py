"""From onnx2torch's module to a PyTorch model a person can keep: torch.fx passes, each re-verified
against onnxruntime (driver.py), then standalone code (codegen.py) and named weights (naming.py)."""
