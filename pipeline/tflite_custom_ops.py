"""The meaning of a TFLite custom op, given as builtin TFLite ops: the public API of the files a
config names under `tflite_custom_ops:`.

Apps ship .tflite files with their own runtime's custom ops (MediaPipe's Convolution2DTransposeBias,
a transposed convolution plus bias). Neither TensorFlow's TFLite interpreter nor tf2onnx knows them,
so before either reads the file each such op is replaced by builtin ops that compute the same thing;
the reference outputs and the ONNX export both come from that file, and the report says so. A file
registers a function per custom code:

    import struct
    from pipeline.tflite_custom_ops import custom_op

    @custom_op("MyScale")
    def my_scale(op):
        (factor,) = struct.unpack("<f", op.options)          # the op's raw custom options
        scale = op.constant(np.array([factor], np.float32))  # a new constant tensor
        op.emit("MUL", [op.inputs[0], scale], op.outputs)    # builtin ops, in run order

`op.emit` takes a builtin op name of TFLite's schema (`BuiltinOperator`), input and output tensor
indices, and the op's options object of the schema's object API (`MulOptionsT()`...) when it has
one; `op.tensor(shape, dtype)` adds an intermediate tensor. Ops this project knows out of the box are
in pipeline/tf_worker/tflite_custom.py.
"""

from __future__ import annotations

from collections.abc import Callable

# custom code -> the function that writes its builtin form
LOWERINGS: dict[str, Callable] = {}


def custom_op(code: str) -> Callable[[Callable], Callable]:
    """Register `function(op)` as the builtin form of the custom op whose custom code is `code`."""

    def register(function: Callable) -> Callable:
        LOWERINGS[code] = function
        return function

    return register
