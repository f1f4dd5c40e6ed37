"""Complex tensors and Fourier transforms at opset 17 and above.

ONNX and onnxruntime have no complex arithmetic; tf2onnx 1.17 converts an FFT only when its result
feeds ComplexAbs, so `tf.signal.fft`, `rfft`, `fft2d` and `keras.ops.fft` / `rfft` / `stft` whose
real and imaginary parts a model reads (FNet-style token mixing, spectrogram front ends) fail export.

Here a complex tensor of shape S is carried as a float tensor of shape S + [2] (real, imaginary):
the layout of ONNX's DFT operator (opset 17). Complex, Real, Imag, ComplexAbs and Cast to and from
complex move between the two forms; FFT, IFFT, FFT2D, IFFT2D, RFFT, RFFT2D and IRFFT become DFT
nodes over the matching axes (the import stage turns DFT into torch.fft). Below opset 17 tf2onnx's
own handlers stay. Complex arithmetic other than these ops (a complex Mul, Exp, Conj) is not
covered: such a graph still fails, at export or when validated.
"""

import numpy as np
import tf2onnx.onnx_opset  # noqa: F401 - tf2onnx's own handlers are registered before they are wrapped
from onnx import TensorProto, helper
from tf2onnx import utils
from tf2onnx.graph_builder import GraphBuilder
from tf2onnx.handler import tf_op

from pipeline.tf_worker.tf2onnx_handlers import wrapping

_DFT_OPSET = 17
# tf2onnx converts an FFT whose result only feeds ComplexAbs (a magnitude spectrum) on its own, as
# DFT matrix products that match TF more closely than onnxruntime's DFT kernel (1.5e-5 off at the
# magnitudes of tf2onnx's own tests): those nodes stay with tf2onnx's handlers.
_MAGNITUDE_FFTS = ("FFT", "RFFT", "RFFT2D")
_TF2ONNX = {op: wrapping.effective_now(op, _DFT_OPSET) for op in (*_MAGNITUDE_FFTS, "ComplexAbs")}
_TF2ONNX_ABS: set[str] = wrapping.per_conversion(set())  # ComplexAbs nodes whose FFT tf2onnx converted
_COMPLEX = (TensorProto.COMPLEX64, TensorProto.COMPLEX128)
_REAL_OF = {TensorProto.COMPLEX64: TensorProto.FLOAT, TensorProto.COMPLEX128: TensorProto.DOUBLE}


def _paired_shape(shape):
    return None if shape is None else [*shape, 2]


def _replace(ctx, node, op_type, inputs, attr=None, shape=None, dtype=TensorProto.FLOAT):
    """Replace `node` by one `op_type` node writing the same output name."""
    name, outputs = node.name, node.output
    ctx.remove_node(name)
    return ctx.make_node(
        op_type, inputs, attr=attr or {}, name=name, outputs=outputs, shapes=[shape], dtypes=[dtype]
    )


def _part(ctx, node, index: int):
    """Real (0) or imaginary (1) part of the paired tensor `node.input[0]`."""
    shape = ctx.get_shape(node.input[0])
    dtype = ctx.get_dtype(node.input[0])
    at = ctx.make_const(utils.make_name(f"{node.name}_part"), np.array(index, dtype=np.int64))
    return _replace(
        ctx, node, "Gather", [node.input[0], at.output[0]], {"axis": -1}, shape[:-1] if shape else None, dtype
    )


def _replace_by_pair(ctx, node, real: str, imag: str, dtype) -> None:
    """Replace `node` by the pair (real, imag) stacked on a new last axis."""
    builder = GraphBuilder(ctx)
    parts = [builder.make_unsqueeze({"data": t, "axes": [-1]}) for t in (real, imag)]
    _replace(ctx, node, "Concat", parts, {"axis": -1}, _paired_shape(ctx.get_shape(node.input[0])), dtype)


@tf_op("Complex")
class Complex:
    @classmethod
    def version_17(cls, ctx, node, **kwargs):
        _replace_by_pair(ctx, node, node.input[0], node.input[1], ctx.get_dtype(node.input[0]))


@tf_op("Real")
class Real:
    @classmethod
    def version_17(cls, ctx, node, **kwargs):
        _part(ctx, node, 0)


@tf_op("Imag")
class Imag:
    @classmethod
    def version_17(cls, ctx, node, **kwargs):
        _part(ctx, node, 1)


@tf_op("ComplexAbs")
class ComplexAbs:
    @classmethod
    def version_17(cls, ctx, node, **kwargs):
        shape = ctx.get_shape(node.input[0])
        dtype = ctx.get_dtype(node.input[0])
        square = ctx.make_node("Mul", [node.input[0], node.input[0]])
        total = GraphBuilder(ctx).make_reduce_sum(
            {"data": square.output[0], "axes": [-1], "keepdims": 0, "noop_with_empty_axes": 1}
        )
        _replace(ctx, node, "Sqrt", [total], shape=shape[:-1] if shape else None, dtype=dtype)


_CAST_HANDLERS = {v: d["Cast"][0] for v, d in enumerate(tf_op.get_opsets()[""]) if "Cast" in d}


@tf_op("Cast")
class Cast:
    @classmethod
    def version_17(cls, ctx, node, **kwargs):
        target = node.get_attr_value("to")
        source = ctx.get_dtype(node.input[0])
        if target in _COMPLEX and source not in _COMPLEX:  # real -> complex: imaginary part zero
            real = _REAL_OF[target]
            values = node.input[0]
            if source != real:
                values = ctx.make_node("Cast", [values], attr={"to": real}).output[0]
            size = ctx.make_node("Shape", [values])
            zero = helper.make_tensor("zero", real, [1], [0])
            zeros = ctx.make_node("ConstantOfShape", [size.output[0]], attr={"value": zero})
            _replace_by_pair(ctx, node, values, zeros.output[0], real)
            return
        if source in _COMPLEX and target not in _COMPLEX:  # complex -> real keeps the real part, as TF
            _part(ctx, node, 0)
            return
        _CAST_HANDLERS[max(_CAST_HANDLERS)](ctx, node, **kwargs)


def _dft(
    ctx, data, axis: int, inverse: bool = False, onesided: bool = False, length=None, dtype=TensorProto.FLOAT
):
    inputs = [data]
    if length is not None:
        inputs.append(
            ctx.make_const(utils.make_name("dft_length"), np.array(length, dtype=np.int64)).output[0]
        )
    attr = {"axis": axis, "inverse": int(inverse), "onesided": int(onesided)}
    return ctx.make_node("DFT", inputs, attr=attr, dtypes=[dtype]).output[0]


def _rank(ctx, name) -> int:
    shape = ctx.get_shape(name)
    utils.make_sure(shape is not None, "a Fourier transform needs an input of known rank")
    return len(shape)


def _complex_fft(ctx, node, axes_count: int, inverse: bool):
    data = node.input[0]
    rank = _rank(ctx, data)  # the paired tensor's rank: the complex rank + 1
    dtype = ctx.get_dtype(data)
    for axis in range(rank - 1 - axes_count, rank - 1):
        data = _dft(ctx, data, axis, inverse=inverse, dtype=dtype)
    _replace(ctx, node, "Identity", [data], shape=ctx.get_shape(node.input[0]), dtype=dtype)


def _fft_lengths(node) -> list[int]:
    lengths = node.inputs[1].get_tensor_value(as_list=True)
    return [int(n) for n in (lengths if isinstance(lengths, list) else [lengths])]


for _name, _count, _inverse in (
    ("FFT", 1, False),
    ("IFFT", 1, True),
    ("FFT2D", 2, False),
    ("IFFT2D", 2, True),
    ("FFT3D", 3, False),
    ("IFFT3D", 3, True),
):

    def _handler(ctx, node, count=_count, inverse=_inverse, **kwargs):
        _complex_fft(ctx, node, count, inverse)

    tf_op.register_handler(_handler, _DFT_OPSET, [_name], "", {})


def _real_fft(ctx, node, axes_count: int):
    """RFFT / RFFT2D / RFFT3D: the last axis one-sided, the others full, each at its fft_length."""
    lengths = _fft_lengths(node)
    shape = ctx.get_shape(node.input[0])
    rank = _rank(ctx, node.input[0])
    dtype = ctx.get_dtype(node.input[0])
    data = GraphBuilder(ctx).make_unsqueeze({"data": node.input[0], "axes": [-1]})
    data = _dft(ctx, data, rank - 1, onesided=True, length=lengths[-1], dtype=dtype)
    for offset, length in zip(range(axes_count - 1, 0, -1), lengths[:-1], strict=True):
        data = _dft(ctx, data, rank - 1 - offset, length=length, dtype=dtype)
    out_shape = None
    if shape is not None:
        out_shape = [*shape[: rank - axes_count], *lengths[:-1], lengths[-1] // 2 + 1, 2]
    _replace(ctx, node, "Identity", [data], shape=out_shape, dtype=dtype)


for _name, _count in (("RFFT", 1), ("RFFT2D", 2), ("RFFT3D", 3)):

    def _real_handler(ctx, node, count=_count, **kwargs):
        _real_fft(ctx, node, count)

    tf_op.register_handler(_real_handler, _DFT_OPSET, [_name], "", {})


@tf_op("IRFFT")
class IRFFT:
    @classmethod
    def version_17(cls, ctx, node, **kwargs):
        # The full spectrum from its one-sided half: X[n - k] = conj(X[k]); then an inverse complex
        # DFT whose real part is the signal.
        (length,) = _fft_lengths(node)
        rank = _rank(ctx, node.input[0])
        dtype = ctx.get_dtype(node.input[0])
        half = length // 2 + 1
        mirrored = [length - k for k in range(half, length)]
        index = ctx.make_const(
            utils.make_name(f"{node.name}_index"), np.array(list(range(half)) + mirrored, dtype=np.int64)
        )
        sign = np.ones((length, 2), dtype=utils.map_onnx_to_numpy_type(dtype))
        sign[half:, 1] = -1
        signs = ctx.make_const(utils.make_name(f"{node.name}_conj"), sign)
        full = ctx.make_node("Gather", [node.input[0], index.output[0]], attr={"axis": rank - 2})
        spectrum = ctx.make_node("Mul", [full.output[0], signs.output[0]])
        signal = _dft(ctx, spectrum.output[0], rank - 2, inverse=True, dtype=dtype)
        at = ctx.make_const(utils.make_name(f"{node.name}_real"), np.array(0, dtype=np.int64))
        shape = ctx.get_shape(node.output[0])
        _replace(ctx, node, "Gather", [signal, at.output[0]], {"axis": -1}, shape, dtype)


def _magnitude_only(ctx, node) -> bool:
    consumers = ctx.find_output_consumers(node.output[0])
    if consumers and all(c.type == "ComplexAbs" for c in consumers):
        _TF2ONNX_ABS.update(c.name for c in consumers)
        return True
    return False


for _op in _MAGNITUDE_FFTS:
    if _TF2ONNX[_op] is not None:
        wrapping.prefer_upstream(_op, _magnitude_only, _TF2ONNX[_op], [_DFT_OPSET])
wrapping.prefer_upstream(
    "ComplexAbs", lambda ctx, node: node.name in _TF2ONNX_ABS, _TF2ONNX["ComplexAbs"], [_DFT_OPSET]
)
