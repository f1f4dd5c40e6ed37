"""Coverage measured against suites the project did not write.

- `tf2onnx_ops`: which ONNX ops the installed tf2onnx can emit (read from its source, not imported).
- `node_tests`: ONNX's own backend node tests, rewritten into the form tf2onnx writes graphs in.
- `import_sweep`: every such test through the project's import path (torch worker side).
"""
