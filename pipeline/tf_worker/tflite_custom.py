"""Custom ops in a .tflite replaced by builtin ops (pipeline/tflite_custom_ops.py) before TFLite's
interpreter and tf2onnx read the file.

An app's runtime registers its own kernels (MediaPipe: Convolution2DTransposeBias and others), and
tf2onnx stops at "cannot convert" on them. Each custom op with a known builtin form (below, or in a
file the config names under `tflite_custom_ops:`) is rewritten in the flatbuffer, in place and in run
order, and tf2onnx reads the rewritten file. The reference outputs come from the original file where
TFLite's interpreter has the app's kernel (its XNNPACK delegate implements MediaPipe's transposed
convolution), so the rewrite is itself checked; otherwise from the rewritten one, and the report says
so. A custom op with no builtin form fails the export stage, named, with the way to give one.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from pipeline.common.user_files import import_config_file
from pipeline.errors import ConfigError, ModelFileError
from pipeline.tflite_custom_ops import LOWERINGS, custom_op

_NUMPY_TYPES = {
    "FLOAT32": np.float32,
    "FLOAT16": np.float16,
    "INT32": np.int32,
    "INT64": np.int64,
    "UINT8": np.uint8,
    "INT8": np.int8,
    "BOOL": np.bool_,
}
# Custom codes tf2onnx converts itself (TFLite's detection post-processing, Flex ops that carry a TF
# op): nothing to rewrite.
_TF2ONNX_KNOWS = ("TFLite_Detection_PostProcess", "Flex")


class CustomOp:
    """One custom op being rewritten: its tensors and raw options, and what it is replaced with."""

    def __init__(self, model, subgraph, operator, code: str):
        self.code = code
        self.inputs = [int(i) for i in operator.inputs]
        self.outputs = [int(i) for i in operator.outputs]
        options = operator.customOptions
        self.options = bytes(bytearray(options)) if options is not None else b""
        self._model, self._subgraph = model, subgraph
        self.replacement: list = []

    def shape(self, tensor: int) -> list[int]:
        """The tensor's shape; -1 where the model leaves a dimension to run time."""
        t = self._subgraph.tensors[tensor]
        signature = t.shapeSignature if t.shapeSignature is not None else t.shape
        return [int(d) for d in (signature if signature is not None else [])]

    def dtype(self, tensor: int) -> np.dtype:
        return np.dtype(_NUMPY_TYPES[_type_name(self._subgraph.tensors[tensor].type)])

    def constant(self, array: np.ndarray, name: str | None = None) -> int:
        from tensorflow.lite.python import schema_py_generated as schema

        array = np.ascontiguousarray(array)
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(array.tobytes(), dtype=np.uint8)
        self._model.buffers.append(buffer)
        return self._add_tensor(list(array.shape), array.dtype, name, len(self._model.buffers) - 1)

    def tensor(self, shape: list[int], dtype, name: str | None = None) -> int:
        return self._add_tensor(list(shape), np.dtype(dtype), name, 0)

    def emit(self, builtin: str, inputs: list[int], outputs: list[int], options=None, version: int = 1):
        """Append a builtin op (a name of TFLite's BuiltinOperator) to this op's replacement."""
        from tensorflow.lite.python import schema_py_generated as schema

        code = getattr(schema.BuiltinOperator, builtin, None)
        if code is None:
            raise ConfigError(f"tflite_custom_ops: {self.code}: '{builtin}' is not a builtin TFLite op")
        operator = schema.OperatorT()
        operator.opcodeIndex = _opcode(self._model, code, version)
        operator.inputs, operator.outputs = list(inputs), list(outputs)
        if options is not None:
            operator.builtinOptionsType = getattr(schema.BuiltinOptions, type(options).__name__[:-1])
            operator.builtinOptions = options
        self.replacement.append(operator)

    def _add_tensor(self, shape, dtype: np.dtype, name: str | None, buffer: int) -> int:
        from tensorflow.lite.python import schema_py_generated as schema

        tensor = schema.TensorT()
        tensor.shape = list(shape)
        tensor.type = getattr(schema.TensorType, _type_of(dtype))
        tensor.buffer = buffer
        tensor.name = (name or f"{self.code}_{len(self._subgraph.tensors)}").encode()
        self._subgraph.tensors.append(tensor)
        return len(self._subgraph.tensors) - 1


def load_files(files) -> None:
    """Import the user's `tflite_custom_ops:` files; their @custom_op functions register themselves."""
    for index, name in enumerate(files):
        import_config_file("tflite_custom_ops", Path(name), f"tf2torch_tflite_custom_ops_{index}")


def lowered(path: Path, files=()) -> tuple[bytes | None, dict[str, int], list[str]]:
    """The model's bytes with every app custom op that has a builtin form rewritten (None when there
    is none), how many ops of each custom code were rewritten, and the custom codes with no form."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    load_files(files)
    model = flatbuffer_utils.read_model(str(path))
    customs = {
        i: c.customCode.decode()
        for i, c in enumerate(model.operatorCodes)
        if max(c.builtinCode, c.deprecatedBuiltinCode) == schema.BuiltinOperator.CUSTOM
        and c.customCode is not None
        and not c.customCode.decode().startswith(_TF2ONNX_KNOWS)
    }
    unknown = sorted(set(customs.values()) - set(LOWERINGS))
    counts: dict[str, int] = {}
    for subgraph in model.subgraphs:
        rewritten = []
        for operator in subgraph.operators:
            code = customs.get(operator.opcodeIndex)
            if code is None or code in unknown:
                rewritten.append(operator)
                continue
            op = CustomOp(model, subgraph, operator, code)
            try:
                LOWERINGS[code](op)
            except (ConfigError, ModelFileError):
                raise
            except Exception as exc:
                raise ModelFileError(
                    f"the builtin form of custom op {code} failed on {path}: {type(exc).__name__}: {exc}"
                ) from None
            if not op.replacement:
                raise ConfigError(f"tflite_custom_ops: the function for {code} emitted no op")
            rewritten.extend(op.replacement)
            counts[code] = counts.get(code, 0) + 1
        subgraph.operators = rewritten
    content = bytes(flatbuffer_utils.convert_object_to_bytearray(model)) if counts else None
    return content, counts, unknown


def unconvertible(path: Path, codes: list[str]) -> str:
    return (
        f"{path} uses custom op(s) {', '.join(codes)} of the app's own runtime, which tf2onnx cannot "
        "convert; give each one's meaning as builtin TFLite ops in a Python file named under "
        "`tflite_custom_ops:` in the config (docs/configuration.md, TFLite custom ops)"
    )


def _opcode(model, code: int, version: int) -> int:
    from tensorflow.lite.python import schema_py_generated as schema

    for index, existing in enumerate(model.operatorCodes):
        if existing.builtinCode == code and existing.version == version:
            return index
    entry = schema.OperatorCodeT()
    entry.builtinCode = code
    # Codes past 127 keep the one-byte field at its placeholder (the schema's rule).
    entry.deprecatedBuiltinCode = min(code, schema.BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES)
    entry.version = version
    model.operatorCodes.append(entry)
    return len(model.operatorCodes) - 1


def _type_name(code: int) -> str:
    from tensorflow.lite.python import schema_py_generated as schema

    return next(k for k, v in vars(schema.TensorType).items() if v == code)


def _type_of(dtype: np.dtype) -> str:
    return next(k for k, v in _NUMPY_TYPES.items() if np.dtype(v) == dtype)


# --- custom ops known out of the box --------------------------------------------------------------

_MEDIAPIPE_SAME = 1  # TfLitePadding: 0 unknown, 1 same, 2 valid


@custom_op("Convolution2DTransposeBias")
def _transpose_conv_bias(op: CustomOp) -> None:
    """MediaPipe's transposed convolution plus bias (selfie and hair segmentation, ML Kit): inputs
    data NHWC, weights OHWI, bias; options TfLiteTransposeConvParams as raw int32s (padding, stride
    width, stride height). Its output is stride * (in - 1) + kernel minus SAME's padding, which is
    exactly TFLite's TRANSPOSE_CONV given that output shape (with its bias input, version 3)."""
    from tensorflow.lite.python import schema_py_generated as schema

    padding, stride_w, stride_h = struct.unpack("<iii", op.options[:12])
    data, weights, bias = op.inputs
    batch, height, width, _ = op.shape(data)
    out_channels, kernel_h, kernel_w, _ = op.shape(weights)
    if min(height, width) < 1:
        raise ModelFileError(
            "Convolution2DTransposeBias needs its input's height and width fixed in the model"
        )

    def size(length: int, kernel: int, stride: int) -> int:
        pad = max(0, kernel - (length - 1) % stride - 1) if padding == _MEDIAPIPE_SAME else 0
        return stride * (length - 1) + kernel - pad

    shape = [max(batch, 1), size(height, kernel_h, stride_h), size(width, kernel_w, stride_w), out_channels]
    options = schema.TransposeConvOptionsT()
    options.padding = schema.Padding.SAME if padding == _MEDIAPIPE_SAME else schema.Padding.VALID
    options.strideW, options.strideH = stride_w, stride_h
    output_shape = op.constant(np.array(shape, np.int32), f"{op.code}_output_shape_{op.outputs[0]}")
    op.emit("TRANSPOSE_CONV", [output_shape, weights, data, bias], op.outputs, options, version=3)
