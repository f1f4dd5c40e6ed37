"""The export sweep's catalogue: one tiny TF function per op, layer or attribute mode, in the groups
issue 17 names (keras.ops, keras.layers, masks, FFT and complex values, patches, depth/space, one-hot,
scatter/gather, control flow) and the TF ops around them.

Imported in the TF process only. A case's `build` runs there and returns a Python callable of tensors
(layers are created and their weights drawn inside `build`); `args` are its inputs. The keras.ops
cases are generated from name lists and kept only when the installed Keras has the op, so the
catalogue follows the installed version. A case's `known` names a failure docs/coverage.md lists with its
reason: the sweep fails when a case fails that is not known, or when a known one starts passing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class Arg:
    shape: tuple[int, ...]
    dtype: str = "float32"
    low: float = -1.0
    high: float = 1.0
    batch: bool = True  # the signature leaves the first dimension unknown, as a model's batch


@dataclass(frozen=True)
class Case:
    name: str
    group: str
    build: Callable[[], Callable]
    args: tuple[Arg, ...]
    atol: float = 1e-4
    rtol: float = 1e-4
    known: str | None = None  # the reason of a known failure (docs/coverage.md lists it)
    known_opsets: tuple[int, ...] = ()  # where it is known to fail; empty: at every opset


X = Arg((2, 6))
POSITIVE = Arg((2, 6), low=0.1, high=2.0)
UNIT = Arg((2, 6), low=-0.9, high=0.9)
IMAGE = Arg((2, 8, 8, 3))
SEQUENCE = Arg((2, 7, 5))
TOKENS = Arg((2, 7), "int32", 0, 10)


def _k():
    import keras

    return keras


def _tf():
    import tensorflow as tf

    return tf


def _randomize(layer) -> None:
    """Weights drawn away from Keras's constant initial values (zero biases, unit gammas), so a
    bias or statistic that the conversion drops changes the outputs."""
    rng = np.random.default_rng(7)
    for weight in layer.weights:
        shape = tuple(weight.shape)
        value = rng.uniform(0.5, 1.5, shape) if "variance" in weight.path else rng.normal(0.0, 0.4, shape)
        weight.assign(value.astype(weight.dtype))


def _layer(factory: Callable, *args: Arg) -> Callable[[], Callable]:
    def build():
        tf = _tf()
        layer = factory(_k())
        samples = [tf.zeros(a.shape, a.dtype) for a in args]
        layer(*samples)
        _randomize(layer)
        return lambda *xs: layer(*xs, training=False)

    return build


def _fn(make: Callable) -> Callable[[], Callable]:
    """A case whose function needs only the modules: make(keras, tf) -> callable."""
    return lambda: make(_k(), _tf())


# --- keras.ops ---------------------------------------------------------------------------------

_UNARY = {
    X: "abs absolute negative sign square exp expm1 sin cos tan tanh sinh cosh arctan arcsinh floor ceil "
    "round trunc relu relu6 sigmoid softplus softsign silu swish hard_sigmoid hard_silu hard_swish elu "
    "selu leaky_relu log_sigmoid gelu softmax log_softmax celu glu squareplus sparse_plus tanh_shrink "
    "soft_shrink hard_shrink hard_tanh threshold sparsemax erf erfinv cumsum cumprod logsumexp "
    "nan_to_num isfinite isinf isnan signbit ones_like zeros_like copy conj real imag angle "
    "flip ravel transpose fliplr triu tril sort argsort argmax argmin amax amin max min mean median "
    "sum prod std var all any count_nonzero norm exp2 fabs deg2rad rad2deg sinc conjugate flipud diag "
    "diff ptp average isneginf isposinf isreal nanmax nanmin nanmean nansum nanprod nanstd nanvar "
    "nanmedian nanargmax nanargmin nancumsum nancumprod rot90 sparse_sigmoid "
    "stop_gradient logical_not",
    POSITIVE: "log log1p log2 log10 sqrt rsqrt reciprocal cbrt",
    UNIT: "arcsin arccos arctanh",
    Arg((2, 6), low=1.1, high=3.0): "arccosh",
}
# ops whose second argument is an axis or parameter, written out
_UNARY_SPECIAL = {
    "erfinv": UNIT,
    "glu": Arg((2, 6)),
    "threshold": X,
}
_BINARY = (
    "add subtract multiply divide true_divide floor_divide mod power maximum minimum arctan2 hypot "
    "logaddexp equal not_equal greater greater_equal less less_equal matmul dot outer inner "
    "heaviside copysign fmod fmax fmin divide_no_nan logaddexp2 nextafter vdot isclose"
)
_INTEGER_BINARY = (
    "left_shift right_shift bitwise_and bitwise_or bitwise_xor bitwise_left_shift bitwise_right_shift"
)
_LOGICAL = "logical_and logical_or logical_xor"
_EXTRA_ARGS = {
    "nancumsum": (1,),
    "nancumprod": (1,),
    "threshold": (0.2, -1.0),
    "cumsum": (1,),
    "cumprod": (1,),
    "logsumexp": (1,),
    "softmax": (-1,),
    "log_softmax": (-1,),
    "glu": (-1,),
}


def _keras_op_cases() -> list[Case]:
    keras = _k()
    cases = []
    for arg, names in _UNARY.items():
        for name in names.split():
            if not hasattr(keras.ops, name):
                continue
            extra = _EXTRA_ARGS.get(name, ())
            used = _UNARY_SPECIAL.get(name, arg)
            cases.append(
                Case(
                    f"keras.ops.{name}",
                    "keras.ops",
                    _fn(lambda k, tf, n=name, e=extra: lambda x: getattr(k.ops, n)(x, *e)),
                    (used,),
                )
            )
    positive_powers = {"power": (Arg((2, 6), low=0.1, high=2.0), Arg((2, 6), low=-2.0, high=2.0))}
    nonzero = Arg((2, 6), low=0.5, high=2.0)
    for name in _BINARY.split():
        if not hasattr(keras.ops, name):
            continue
        args = positive_powers.get(name)
        if args is None:
            second = nonzero if name in ("divide", "true_divide", "floor_divide", "mod", "fmod") else X
            args = (
                X,
                Arg((6, 6))
                if name in ("matmul", "dot")
                else Arg((6,))
                if name in ("outer", "inner")
                else second,
            )
            if name in ("outer", "inner"):
                args = (Arg((6,), batch=False), Arg((6,), batch=False))
        cases.append(
            Case(
                f"keras.ops.{name}",
                "keras.ops",
                _fn(lambda k, tf, n=name: lambda a, b: getattr(k.ops, n)(a, b)),
                args,
            )
        )
    integers = Arg((2, 6), "int32", 1, 16)
    for name in _INTEGER_BINARY.split():
        if hasattr(keras.ops, name):
            cases.append(
                Case(
                    f"keras.ops.{name}",
                    "keras.ops",
                    _fn(lambda k, tf, n=name: lambda a: getattr(k.ops, n)(a, k.ops.full_like(a, 3))),
                    (integers,),
                )
            )
    for name in _LOGICAL.split():
        cases.append(
            Case(
                f"keras.ops.{name}",
                "keras.ops",
                _fn(lambda k, tf, n=name: lambda a, b: getattr(k.ops, n)(a > 0, b > 0)),
                (X, X),
            )
        )
    return cases


def _keras_op_specials() -> list[Case]:
    c = []
    add = c.append
    add(Case("keras.ops.identity", "keras.ops", _fn(lambda k, tf: lambda x: x @ k.ops.identity(6)), (X,)))
    add(Case("keras.ops.unstack", "keras.ops", _fn(lambda k, tf: lambda x: k.ops.unstack(x, axis=1)), (X,)))
    for name in ("vstack", "hstack", "dstack"):
        add(
            Case(
                f"keras.ops.{name}",
                "keras.ops",
                _fn(lambda k, tf, n=name: lambda a, b: getattr(k.ops, n)([a, b])),
                (X, X),
            )
        )
    # keras.ops.kron has no case: Keras's TF backend raises a TypeError for it in a tf.function
    add(
        Case("keras.ops.where", "keras.ops", _fn(lambda k, tf: lambda a, b: k.ops.where(a > 0, a, b)), (X, X))
    )
    add(Case("keras.ops.clip", "keras.ops", _fn(lambda k, tf: lambda x: k.ops.clip(x, -0.3, 0.4)), (X,)))
    add(
        Case(
            "keras.ops.reshape", "keras.ops", _fn(lambda k, tf: lambda x: k.ops.reshape(x, (-1, 3, 2))), (X,)
        )
    )
    add(
        Case("keras.ops.expand_dims", "keras.ops", _fn(lambda k, tf: lambda x: k.ops.expand_dims(x, 1)), (X,))
    )
    add(
        Case(
            "keras.ops.squeeze",
            "keras.ops",
            _fn(lambda k, tf: lambda x: k.ops.squeeze(x, 1)),
            (Arg((2, 1, 6)),),
        )
    )
    add(
        Case(
            "keras.ops.concatenate",
            "keras.ops",
            _fn(lambda k, tf: lambda a, b: k.ops.concatenate([a, b], axis=-1)),
            (X, X),
        )
    )
    add(
        Case(
            "keras.ops.stack",
            "keras.ops",
            _fn(lambda k, tf: lambda a, b: k.ops.stack([a, b], axis=1)),
            (X, X),
        )
    )
    add(Case("keras.ops.split", "keras.ops", _fn(lambda k, tf: lambda x: k.ops.split(x, 3, axis=-1)), (X,)))
    # "The rest" (-1) along an axis whose length is known only at run time (here the batch).
    add(
        Case(
            "tf.split rest, run-time length",
            "tf",
            _fn(lambda k, tf: lambda x: tf.split(x, [1, -1], axis=0)),
            (X,),
        )
    )
    add(Case("keras.ops.tile", "keras.ops", _fn(lambda k, tf: lambda x: k.ops.tile(x, (1, 3))), (X,)))
    add(Case("keras.ops.repeat", "keras.ops", _fn(lambda k, tf: lambda x: k.ops.repeat(x, 2, axis=1)), (X,)))
    add(Case("keras.ops.roll", "keras.ops", _fn(lambda k, tf: lambda x: k.ops.roll(x, 2, axis=1)), (X,)))
    add(
        Case(
            "keras.ops.moveaxis",
            "keras.ops",
            _fn(lambda k, tf: lambda x: k.ops.moveaxis(x, 1, 0)),
            (SEQUENCE,),
        )
    )
    add(
        Case(
            "keras.ops.swapaxes",
            "keras.ops",
            _fn(lambda k, tf: lambda x: k.ops.swapaxes(x, 1, 2)),
            (SEQUENCE,),
        )
    )
    add(
        Case(
            "keras.ops.broadcast_to",
            "keras.ops",
            _fn(lambda k, tf: lambda x: k.ops.broadcast_to(x[:, :1], (2, 4))),
            (Arg((2, 6), batch=False),),
        )
    )
    for mode in ("constant", "reflect", "symmetric"):
        add(
            Case(
                f"keras.ops.pad[{mode}]",
                "keras.ops",
                _fn(lambda k, tf, m=mode: lambda x: k.ops.pad(x, ((0, 0), (2, 1)), mode=m)),
                (X,),
            )
        )
    add(
        Case(
            "keras.ops.take",
            "keras.ops",
            _fn(lambda k, tf: lambda x, i: k.ops.take(x, i, axis=1)),
            (X, Arg((4,), "int32", 0, 6, batch=False)),
        )
    )
    add(
        Case(
            "keras.ops.take_along_axis",
            "keras.ops",
            _fn(lambda k, tf: lambda x, i: k.ops.take_along_axis(x, i, axis=1)),
            (X, Arg((2, 3), "int32", 0, 6)),
        )
    )
    add(Case("keras.ops.top_k", "keras.ops", _fn(lambda k, tf: lambda x: k.ops.top_k(x, 3)), (X,)))
    add(Case("keras.ops.one_hot", "keras.ops", _fn(lambda k, tf: lambda i: k.ops.one_hot(i, 10)), (TOKENS,)))
    add(
        Case(
            "keras.ops.einsum",
            "keras.ops",
            _fn(lambda k, tf: lambda a, b: k.ops.einsum("bij,bjk->bik", a, b)),
            (Arg((2, 3, 4)), Arg((2, 4, 5))),
        )
    )
    add(
        Case(
            "keras.ops.arange",
            "keras.ops",
            _fn(lambda k, tf: lambda x: x + k.ops.cast(k.ops.arange(k.ops.shape(x)[1]), x.dtype)),
            (X,),
        )
    )
    add(Case("keras.ops.eye", "keras.ops", _fn(lambda k, tf: lambda x: x @ k.ops.eye(6)), (X,)))
    add(
        Case(
            "keras.ops.linspace",
            "keras.ops",
            _fn(lambda k, tf: lambda x: x * k.ops.linspace(0.0, 1.0, 6)),
            (X,),
        )
    )
    add(
        Case(
            "keras.ops.cast[int32]",
            "keras.ops",
            _fn(lambda k, tf: lambda x: k.ops.cast(x * 5.0, "int32")),
            (X,),
        )
    )
    add(
        Case(
            "keras.ops.diagonal",
            "keras.ops",
            _fn(lambda k, tf: lambda x: k.ops.diagonal(x, axis1=1, axis2=2)),
            (Arg((2, 4, 4)),),
        )
    )
    add(
        Case(
            "keras.ops.trace",
            "keras.ops",
            _fn(lambda k, tf: lambda x: k.ops.trace(x, axis1=1, axis2=2)),
            (Arg((2, 4, 4)),),
        )
    )
    add(
        Case(
            "keras.ops.slice",
            "keras.ops",
            _fn(lambda k, tf: lambda x: k.ops.slice(x, (0, 1), (2, 3))),
            (Arg((2, 6), batch=False),),
        )
    )
    add(
        Case(
            "keras.ops.dynamic_slice",
            "keras.ops",
            _fn(lambda k, tf: lambda x: k.ops.slice(x, (0, 1, 0), (2, 3, 5))),
            (Arg((2, 7, 5), batch=False),),
        )
    )
    add(
        Case(
            "keras.ops.normalize", "keras.ops", _fn(lambda k, tf: lambda x: k.ops.normalize(x, axis=-1)), (X,)
        )
    )
    add(Case("keras.ops.moments", "keras.ops", _fn(lambda k, tf: lambda x: k.ops.moments(x, axes=[1])), (X,)))
    add(
        Case(
            "keras.ops.image.resize[bilinear]",
            "keras.ops",
            _fn(lambda k, tf: lambda x: k.ops.image.resize(x, (12, 5))),
            (IMAGE,),
        )
    )
    add(
        Case(
            "keras.ops.image.resize[nearest]",
            "keras.ops",
            _fn(lambda k, tf: lambda x: k.ops.image.resize(x, (16, 16), interpolation="nearest")),
            (IMAGE,),
        )
    )
    # TF's bicubic kernel reads its weights from a 1024-entry table: TF itself is off by up to 1e-3
    add(
        Case(
            "keras.ops.image.resize[bicubic]",
            "keras.ops",
            _fn(lambda k, tf: lambda x: k.ops.image.resize(x, (12, 12), interpolation="bicubic")),
            (IMAGE,),
            atol=2e-3,
        )
    )
    add(
        Case(
            "keras.ops.image.extract_patches",
            "keras.ops",
            _fn(lambda k, tf: lambda x: k.ops.image.extract_patches(x, 4)),
            (IMAGE,),
        )
    )
    add(
        Case(
            "keras.ops.segment_sum",
            "keras.ops",
            _fn(lambda k, tf: lambda x: k.ops.segment_sum(x, tf.constant([0, 0, 1, 2]), num_segments=3)),
            (Arg((4, 3), batch=False),),
        )
    )
    add(
        Case(
            "keras.ops.scatter_update",
            "keras.ops",
            _fn(lambda k, tf: lambda x: k.ops.scatter_update(x, [[0, 1], [1, 3]], k.ops.ones((2,)) * 5.0)),
            (Arg((2, 6), batch=False),),
        )
    )
    add(
        Case(
            "keras.ops.scatter",
            "keras.ops",
            _fn(lambda k, tf: lambda v: k.ops.scatter([[0, 1], [1, 3]], v, (2, 6))),
            (Arg((2,), batch=False),),
        )
    )
    add(Case("keras.ops.fft", "fft", _fn(lambda k, tf: lambda a, b: k.ops.fft((a, b))), (X, X)))
    add(Case("keras.ops.rfft", "fft", _fn(lambda k, tf: lambda x: k.ops.rfft(x)), (Arg((2, 8)),)))
    add(Case("keras.ops.stft", "fft", _fn(lambda k, tf: lambda x: k.ops.stft(x, 8, 4, 8)), (Arg((2, 32)),)))
    add(
        Case(
            "keras.ops.conv",
            "keras.ops",
            _fn(lambda k, tf: lambda x: k.ops.conv(x, tf.ones((3, 3, 3, 4)) * 0.1, padding="same")),
            (IMAGE,),
        )
    )
    add(
        Case(
            "keras.ops.depthwise_conv",
            "keras.ops",
            _fn(lambda k, tf: lambda x: k.ops.depthwise_conv(x, tf.ones((3, 3, 3, 2)) * 0.1, strides=2)),
            (IMAGE,),
        )
    )
    add(
        Case(
            "keras.ops.conv_transpose",
            "keras.ops",
            _fn(
                lambda k, tf: (
                    lambda x: k.ops.conv_transpose(x, tf.ones((3, 3, 4, 3)) * 0.1, 2, padding="same")
                )
            ),
            (IMAGE,),
        )
    )
    add(
        Case(
            "keras.ops.max_pool",
            "keras.ops",
            _fn(lambda k, tf: lambda x: k.ops.max_pool(x, 3, 2, padding="same")),
            (IMAGE,),
        )
    )
    add(
        Case(
            "keras.ops.average_pool",
            "keras.ops",
            _fn(lambda k, tf: lambda x: k.ops.average_pool(x, 3, 2, padding="same")),
            (IMAGE,),
        )
    )
    add(
        Case(
            "keras.ops.batch_normalization",
            "keras.ops",
            _fn(
                lambda k, tf: (
                    lambda x: k.ops.batch_normalization(
                        x,
                        tf.constant([0.1, 0.2, -0.1]),
                        tf.constant([1.5, 0.5, 2.0]),
                        axis=-1,
                        offset=tf.constant([0.3, 0.0, -0.2]),
                        scale=tf.constant([1.2, 0.7, 1.0]),
                    )
                )
            ),
            (IMAGE,),
        )
    )
    add(
        Case(
            "keras.ops.dot_product_attention",
            "keras.ops",
            _fn(lambda k, tf: lambda q, kk, v: k.ops.dot_product_attention(q, kk, v, is_causal=True)),
            (Arg((2, 7, 2, 4)),) * 3,
        )
    )
    return c


# --- keras.layers --------------------------------------------------------------------------------


def _keras_layer_cases() -> list[Case]:
    c = []

    def add(name, factory, *args, **kw):
        c.append(Case(f"keras.layers.{name}", "keras.layers", _layer(factory, *args), args, **kw))

    volume = Arg((2, 6, 6, 6, 2))
    add("Dense", lambda k: k.layers.Dense(4, activation="relu"), X)
    add("EinsumDense", lambda k: k.layers.EinsumDense("abc,cd->abd", (7, 4), bias_axes="d"), SEQUENCE)
    add("Conv1D[causal]", lambda k: k.layers.Conv1D(4, 3, padding="causal", dilation_rate=2), SEQUENCE)
    add("Conv1D[same,stride2]", lambda k: k.layers.Conv1D(4, 3, strides=2, padding="same"), SEQUENCE)
    add("Conv2D[same,stride2]", lambda k: k.layers.Conv2D(4, 3, strides=2, padding="same"), IMAGE)
    add("Conv2D[dilated]", lambda k: k.layers.Conv2D(4, 3, dilation_rate=2), IMAGE)
    add("Conv2D[groups]", lambda k: k.layers.Conv2D(4, 3, groups=2), Arg((2, 8, 8, 4)))
    add("Conv3D", lambda k: k.layers.Conv3D(3, 3, padding="same"), volume)
    add("Conv1DTranspose", lambda k: k.layers.Conv1DTranspose(3, 3, strides=2, padding="same"), SEQUENCE)
    add("Conv2DTranspose[same]", lambda k: k.layers.Conv2DTranspose(3, 3, strides=2, padding="same"), IMAGE)
    add("Conv2DTranspose[valid]", lambda k: k.layers.Conv2DTranspose(3, 4, strides=2), IMAGE)
    add("Conv3DTranspose", lambda k: k.layers.Conv3DTranspose(2, 3, strides=2, padding="same"), volume)
    add("DepthwiseConv1D", lambda k: k.layers.DepthwiseConv1D(3, depth_multiplier=2), SEQUENCE)
    add("DepthwiseConv2D", lambda k: k.layers.DepthwiseConv2D(3, padding="same"), IMAGE)
    add("SeparableConv1D", lambda k: k.layers.SeparableConv1D(4, 3), SEQUENCE)
    add("SeparableConv2D", lambda k: k.layers.SeparableConv2D(4, 3, padding="same"), IMAGE)
    for dims, arg in ((1, SEQUENCE), (2, IMAGE), (3, volume)):
        for kind in ("Max", "Average"):
            add(
                f"{kind}Pooling{dims}D",
                lambda k, n=f"{kind}Pooling{dims}D": getattr(k.layers, n)(2, padding="same"),
                arg,
            )
            add(
                f"Global{kind}Pooling{dims}D",
                lambda k, n=f"Global{kind}Pooling{dims}D": getattr(k.layers, n)(),
                arg,
            )
        add(f"ZeroPadding{dims}D", lambda k, n=f"ZeroPadding{dims}D": getattr(k.layers, n)(1), arg)
        add(f"Cropping{dims}D", lambda k, n=f"Cropping{dims}D": getattr(k.layers, n)(1), arg)
        add(f"UpSampling{dims}D", lambda k, n=f"UpSampling{dims}D": getattr(k.layers, n)(2), arg)
    add("UpSampling2D[bilinear]", lambda k: k.layers.UpSampling2D(2, interpolation="bilinear"), IMAGE)
    add("BatchNormalization", lambda k: k.layers.BatchNormalization(), IMAGE)
    add("LayerNormalization", lambda k: k.layers.LayerNormalization(), SEQUENCE)
    add(
        "LayerNormalization[no scale]",
        lambda k: k.layers.LayerNormalization(center=False, scale=False),
        SEQUENCE,
    )
    add("GroupNormalization", lambda k: k.layers.GroupNormalization(groups=2), Arg((2, 8, 8, 4)))
    add("UnitNormalization", lambda k: k.layers.UnitNormalization(), X)
    if hasattr(_k().layers, "RMSNormalization"):
        add("RMSNormalization", lambda k: k.layers.RMSNormalization(), SEQUENCE)
    add("Embedding", lambda k: k.layers.Embedding(10, 4), TOKENS)
    for rnn in ("SimpleRNN", "LSTM", "GRU"):
        add(rnn, lambda k, n=rnn: getattr(k.layers, n)(4, return_sequences=True), SEQUENCE)
        add(f"{rnn}[go_backwards]", lambda k, n=rnn: getattr(k.layers, n)(4, go_backwards=True), SEQUENCE)
    add("GRU[reset_after=False]", lambda k: k.layers.GRU(4, reset_after=False), SEQUENCE)
    add(
        "Bidirectional(LSTM)",
        lambda k: k.layers.Bidirectional(k.layers.LSTM(4, return_sequences=True)),
        SEQUENCE,
    )
    add(
        "Bidirectional(GRU[dropout])",
        lambda k: k.layers.Bidirectional(k.layers.GRU(4, dropout=0.2, recurrent_dropout=0.2)),
        SEQUENCE,
    )
    add("ConvLSTM1D", lambda k: k.layers.ConvLSTM1D(3, 3, padding="same"), Arg((2, 4, 6, 2)))
    add("ConvLSTM2D", lambda k: k.layers.ConvLSTM2D(3, 3, padding="same"), Arg((2, 3, 6, 6, 2)))
    add("MultiHeadAttention", lambda k: _SelfAttention(k), SEQUENCE)
    add("MultiHeadAttention[causal]", lambda k: _SelfAttention(k, causal=True), SEQUENCE)
    if hasattr(_k().layers, "GroupQueryAttention"):
        add(
            "GroupQueryAttention",
            lambda k: _SelfAttention(k, layer=k.layers.GroupQueryAttention(4, 4, 2)),
            Arg((2, 7, 8)),
        )
    add("Attention", lambda k: _Pairwise(k.layers.Attention(use_scale=True)), SEQUENCE)
    add("AdditiveAttention", lambda k: _Pairwise(k.layers.AdditiveAttention()), SEQUENCE)
    for name in ("ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax"):
        add(name, lambda k, n=name: getattr(k.layers, n)(), X)
    add("Activation[gelu]", lambda k: k.layers.Activation("gelu"), X)
    add("Dropout", lambda k: k.layers.Dropout(0.5), X)
    add("SpatialDropout2D", lambda k: k.layers.SpatialDropout2D(0.5), IMAGE)
    add("GaussianNoise", lambda k: k.layers.GaussianNoise(0.5), X)
    add("Flatten", lambda k: k.layers.Flatten(), IMAGE)
    add("Reshape", lambda k: k.layers.Reshape((3, -1)), X)
    add("Permute", lambda k: k.layers.Permute((2, 1)), SEQUENCE)
    add("RepeatVector", lambda k: k.layers.RepeatVector(3), X)
    add("Rescaling", lambda k: k.layers.Rescaling(1 / 255.0, offset=-0.5), IMAGE)
    add("Normalization", lambda k: k.layers.Normalization(mean=0.3, variance=2.0), X)
    add("Resizing", lambda k: k.layers.Resizing(5, 11), IMAGE)
    add("CenterCrop", lambda k: k.layers.CenterCrop(4, 6), IMAGE)
    add("Masking", lambda k: _Masked(k), SEQUENCE)
    for merge in ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate"):
        add(merge, lambda k, n=merge: _Merged(getattr(k.layers, n)()), X)
    add("Dot", lambda k: _Merged(k.layers.Dot(axes=1)), X)
    add("TimeDistributed(Dense)", lambda k: k.layers.TimeDistributed(k.layers.Dense(3)), SEQUENCE)
    add("CategoryEncoding", lambda k: k.layers.CategoryEncoding(10, output_mode="multi_hot"), TOKENS)
    # augmentation and regularisation layers: identities (or a fixed crop) at inference
    for name in (
        "RandomFlip",
        "RandomRotation",
        "RandomZoom",
        "RandomContrast",
        "RandomTranslation",
        "RandomBrightness",
        "GaussianDropout",
        "AlphaDropout",
        "ActivityRegularization",
        "Identity",
        "SpatialDropout1D",
    ):
        arg = (
            SEQUENCE
            if name == "SpatialDropout1D"
            else X
            if name in ("Identity", "ActivityRegularization")
            else IMAGE
        )
        factor = {
            "RandomFlip": (),
            "Identity": (),
            "ActivityRegularization": (),
            "RandomTranslation": (0.2, 0.2),
        }
        factor = factor.get(name, (0.2,))
        if hasattr(_k().layers, name):
            add(name, lambda k, n=name, f=factor: getattr(k.layers, n)(*f), arg)
    add("RandomCrop", lambda k: k.layers.RandomCrop(6, 6), IMAGE)
    add("SpatialDropout3D", lambda k: k.layers.SpatialDropout3D(0.3), volume)
    for name in ("AdaptiveAveragePooling2D", "AdaptiveMaxPooling2D", "AdaptiveAveragePooling1D"):
        if hasattr(_k().layers, name):
            add(name, lambda k, n=name: getattr(k.layers, n)(4), SEQUENCE if name.endswith("1D") else IMAGE)
    add("ConvLSTM3D", lambda k: k.layers.ConvLSTM3D(2, 3, padding="same"), Arg((2, 3, 4, 4, 4, 2)))
    add("RNN(LSTMCell)", lambda k: k.layers.RNN(k.layers.LSTMCell(4)), SEQUENCE)
    add(
        "RNN(GRUCell, SimpleRNNCell)",
        lambda k: k.layers.RNN(k.layers.StackedRNNCells([k.layers.GRUCell(4), k.layers.SimpleRNNCell(3)])),
        SEQUENCE,
    )
    add("SpectralNormalization(Dense)", lambda k: k.layers.SpectralNormalization(k.layers.Dense(4)), X)
    # STFTSpectrogram builds its window with scipy, which is not a dependency here: no case
    if False:
        add(
            "STFTSpectrogram",
            lambda k: k.layers.STFTSpectrogram(frame_length=16, frame_step=8, fft_length=16),
            Arg((2, 64, 1)),
        )
    if hasattr(_k().layers, "MelSpectrogram"):
        add(
            "MelSpectrogram",
            lambda k: k.layers.MelSpectrogram(
                fft_length=32, sequence_stride=16, sequence_length=32, num_mel_bins=8
            ),
            Arg((2, 256)),
        )
    if hasattr(_k().layers, "ReversibleEmbedding"):
        add("ReversibleEmbedding", lambda k: k.layers.ReversibleEmbedding(10, 4), TOKENS)
    add("Discretization", lambda k: k.layers.Discretization(bin_boundaries=[-0.5, 0.0, 0.5]), X)
    return c


def _SelfAttention(k, causal: bool = False, layer=None):  # noqa: N802 - builds a layer
    attention = layer or k.layers.MultiHeadAttention(num_heads=2, key_dim=4)

    class SelfAttention(k.layers.Layer):
        def __init__(self):
            super().__init__()
            self.attention = attention

        def call(self, x):
            if causal:
                return self.attention(x, x, use_causal_mask=True)
            return self.attention(x, x)

    return SelfAttention()


def _Pairwise(layer):  # noqa: N802
    keras = _k()

    class Pairwise(keras.layers.Layer):
        def __init__(self):
            super().__init__()
            self.inner = layer

        def call(self, x):
            return self.inner([x, x[:, ::-1]])

    return Pairwise()


def _Merged(layer):  # noqa: N802
    keras = _k()

    class Merged(keras.layers.Layer):
        def __init__(self):
            super().__init__()
            self.inner = layer

        def call(self, x):
            return self.inner([x, x * 0.5 + 0.1])

    return Merged()


def _Masked(k):  # noqa: N802
    class MaskedLSTM(k.layers.Layer):
        """Steps whose features are all 0 are skipped by the LSTM (Keras's Masking layer)."""

        def __init__(self):
            super().__init__()
            self.masking = k.layers.Masking(0.0)
            self.lstm = k.layers.LSTM(3)

        def call(self, x):
            x = x * k.ops.cast(k.ops.arange(7)[None, :, None] % 3 != 0, x.dtype)  # every third step masked
            return self.lstm(self.masking(x))

    return MaskedLSTM()


# --- masks ---------------------------------------------------------------------------------------


def _mask_cases() -> list[Case]:
    def causal(k, tf):
        def fn(x):
            n = tf.shape(x)[1]
            mask = tf.linalg.band_part(tf.ones((n, n)), -1, 0)
            scores = tf.matmul(x, x, transpose_b=True)
            return tf.nn.softmax(scores + (1.0 - mask) * -1e9)

        return fn

    def padding(k, tf):
        def fn(tokens, x):
            mask = tf.cast(tf.not_equal(tokens, 0), x.dtype)[:, None, :]
            scores = tf.matmul(x, x, transpose_b=True)
            return tf.nn.softmax(tf.where(mask > 0, scores, -1e9))

        return fn

    def keras_causal(k, tf):
        def fn(x):
            n = k.ops.shape(x)[1]
            mask = k.ops.tril(k.ops.ones((n, n), dtype="bool"))
            scores = k.ops.matmul(x, k.ops.transpose(x, (0, 2, 1)))
            return k.ops.softmax(k.ops.where(mask[None], scores, -1e9), axis=-1)

        return fn

    def sequence_mask(k, tf):
        return lambda lengths, x: x * tf.cast(tf.sequence_mask(lengths, 7), x.dtype)[:, :, None]

    return [
        Case("mask.causal[tf.linalg.band_part]", "masks", _fn(causal), (SEQUENCE,)),
        Case("mask.causal[keras.ops.tril]", "masks", _fn(keras_causal), (SEQUENCE,)),
        Case("mask.padding[tokens != 0]", "masks", _fn(padding), (TOKENS, SEQUENCE)),
        Case("mask.tf.sequence_mask", "masks", _fn(sequence_mask), (Arg((2,), "int32", 1, 8), SEQUENCE)),
    ]


# --- FFT and complex values -----------------------------------------------------------------------


def _fft_cases() -> list[Case]:
    def complex_case(transform):
        def make(k, tf):
            def fn(a, b):
                y = transform(tf, tf.complex(a, b))
                return tf.math.real(y), tf.math.imag(y)

            return fn

        return make

    def real_case(transform):
        return lambda k, tf: lambda x: transform(tf, x)

    def split(y):
        tf = _tf()
        return tf.math.real(y), tf.math.imag(y)

    grid = Arg((2, 4, 8))
    return [
        Case(
            "tf.signal.fft",
            "fft",
            _fn(complex_case(lambda tf, z: tf.signal.fft(z))),
            (Arg((2, 8)), Arg((2, 8))),
        ),
        Case(
            "tf.signal.ifft",
            "fft",
            _fn(complex_case(lambda tf, z: tf.signal.ifft(z))),
            (Arg((2, 8)), Arg((2, 8))),
        ),
        Case("tf.signal.fft2d", "fft", _fn(complex_case(lambda tf, z: tf.signal.fft2d(z))), (grid, grid)),
        Case("tf.signal.rfft", "fft", _fn(real_case(lambda tf, x: split(tf.signal.rfft(x)))), (Arg((2, 8)),)),
        Case(
            "tf.signal.rfft[odd]",
            "fft",
            _fn(real_case(lambda tf, x: split(tf.signal.rfft(x)))),
            (Arg((2, 7)),),
        ),
        Case("tf.signal.rfft2d", "fft", _fn(real_case(lambda tf, x: split(tf.signal.rfft2d(x)))), (grid,)),
        Case(
            "tf.signal.irfft",
            "fft",
            _fn(complex_case(lambda tf, z: tf.signal.irfft(z))),
            (Arg((2, 5)), Arg((2, 5))),
        ),
        Case(
            "tf.abs[complex]", "fft", _fn(lambda k, tf: lambda x: tf.abs(tf.signal.rfft(x))), (Arg((2, 8)),)
        ),
        Case(
            "fnet mixing[real(fft2d)]",
            "fft",
            _fn(lambda k, tf: lambda x: tf.math.real(tf.signal.fft2d(tf.cast(x, tf.complex64)))),
            (grid,),
        ),
    ]


# --- patches, depth/space, one-hot, scatter/gather ------------------------------------------------


def _tensor_cases() -> list[Case]:
    c = []
    add = c.append
    for padding in ("VALID", "SAME"):
        add(
            Case(
                f"tf.image.extract_patches[{padding}]",
                "patches",
                _fn(
                    lambda k, tf, p=padding: (
                        lambda x: tf.image.extract_patches(x, [1, 3, 3, 1], [1, 2, 2, 1], [1, 1, 1, 1], p)
                    )
                ),
                (IMAGE,),
            )
        )
    add(
        Case(
            "tf.image.extract_patches[rates=2]",
            "patches",
            _fn(
                lambda k, tf: (
                    lambda x: tf.image.extract_patches(x, [1, 2, 2, 1], [1, 1, 1, 1], [1, 2, 2, 1], "VALID")
                )
            ),
            (IMAGE,),
        )
    )
    for block in (2, 4):
        add(
            Case(
                f"tf.nn.depth_to_space[{block}]",
                "depth/space",
                _fn(lambda k, tf, b=block: lambda x: tf.nn.depth_to_space(x, b)),
                (Arg((2, 3, 3, 32)),),
            )
        )
        add(
            Case(
                f"tf.nn.space_to_depth[{block}]",
                "depth/space",
                _fn(lambda k, tf, b=block: lambda x: tf.nn.space_to_depth(x, b)),
                (IMAGE,),
            )
        )
    add(
        Case(
            "tf.nn.space_to_batch_nd",
            "depth/space",
            _fn(lambda k, tf: lambda x: tf.space_to_batch_nd(x, [2, 2], [[0, 0], [0, 0]])),
            (Arg((2, 8, 8, 3), batch=False),),
        )
    )
    add(Case("tf.one_hot[axis=-1]", "one-hot", _fn(lambda k, tf: lambda i: tf.one_hot(i, 10)), (TOKENS,)))
    add(
        Case(
            "tf.one_hot[axis=0,on/off]",
            "one-hot",
            _fn(lambda k, tf: lambda i: tf.one_hot(i, 10, on_value=2.0, off_value=-1.0, axis=0)),
            (TOKENS,),
        )
    )
    add(
        Case(
            "tf.one_hot[negative index]",
            "one-hot",
            _fn(lambda k, tf: lambda i: tf.one_hot(i - 2, 6)),
            (TOKENS,),
        )
    )
    index = Arg((2, 3), "int32", 0, 7)
    add(
        Case(
            "tf.gather[axis=1]",
            "scatter/gather",
            _fn(lambda k, tf: lambda x, i: tf.gather(x, i, axis=1)),
            (SEQUENCE, index),
        )
    )
    add(
        Case(
            "tf.gather[batch_dims=1]",
            "scatter/gather",
            _fn(lambda k, tf: lambda x, i: tf.gather(x, i, axis=1, batch_dims=1)),
            (SEQUENCE, index),
        )
    )
    add(
        Case(
            "tf.gather_nd",
            "scatter/gather",
            _fn(lambda k, tf: lambda x, i: tf.gather_nd(x, i)),
            (Arg((3, 7, 5), batch=False), Arg((4, 2), "int32", 0, 3, batch=False)),
        )
    )
    add(
        Case(
            "tf.gather_nd[batch_dims=1]",
            "scatter/gather",
            _fn(lambda k, tf: lambda x, i: tf.gather_nd(x, i, batch_dims=1)),
            (SEQUENCE, Arg((2, 3, 1), "int32", 0, 7)),
        )
    )
    add(
        Case(
            "tf.tensor_scatter_nd_update",
            "scatter/gather",
            _fn(lambda k, tf: lambda x, u: tf.tensor_scatter_nd_update(x, [[0, 1], [1, 3]], u)),
            (Arg((2, 6), batch=False), Arg((2,), batch=False)),
        )
    )
    add(
        Case(
            "tf.tensor_scatter_nd_add",
            "scatter/gather",
            _fn(lambda k, tf: lambda x, u: tf.tensor_scatter_nd_add(x, [[0, 1], [0, 1]], u)),
            (Arg((2, 6), batch=False), Arg((2,), batch=False)),
        )
    )
    add(
        Case(
            "tf.tensor_scatter_nd_max",
            "scatter/gather",
            _fn(lambda k, tf: lambda x, u: tf.tensor_scatter_nd_max(x, [[0, 1], [1, 2]], u)),
            (Arg((2, 6), batch=False), Arg((2,), batch=False)),
        )
    )
    add(
        Case(
            "tf.scatter_nd",
            "scatter/gather",
            _fn(lambda k, tf: lambda u: tf.scatter_nd([[1], [3]], u, [5, 6])),
            (Arg((2, 6), batch=False),),
        )
    )
    add(
        Case(
            "tf.math.unsorted_segment_sum",
            "scatter/gather",
            _fn(lambda k, tf: lambda x: tf.math.unsorted_segment_sum(x, [2, 0, 2, 1], 3)),
            (Arg((4, 3), batch=False),),
        )
    )
    add(
        Case(
            "tf.math.segment_max",
            "scatter/gather",
            _fn(lambda k, tf: lambda x: tf.math.segment_max(x, [0, 0, 1, 2])),
            (Arg((4, 3), batch=False),),
        )
    )
    return c


# --- control flow --------------------------------------------------------------------------------


def _control_flow_cases() -> list[Case]:
    def cond(k, tf):
        w = tf.Variable(np.random.default_rng(3).normal(size=(6, 6)).astype("float32"))
        return lambda x: tf.cond(tf.reduce_sum(x) > 0.0, lambda: tf.tanh(x @ w), lambda: x * 2.0 - 1.0)

    def case(k, tf):
        def fn(x):
            s = tf.reduce_mean(x)
            return tf.case([(s > 0.3, lambda: x + 1.0), (s < -0.3, lambda: x - 1.0)], default=lambda: x * 3.0)

        return fn

    def switch(k, tf):
        def fn(x, i):
            return tf.switch_case(i[0], [lambda: x + 1.0, lambda: tf.sin(x), lambda: x * x])

        return fn

    def while_outer(k, tf):
        w = tf.Variable(np.linalg.qr(np.random.default_rng(4).normal(size=(6, 6)))[0].astype("float32"))
        b = tf.constant(np.linspace(-0.2, 0.2, 6).astype("float32"))

        def fn(x):
            steps = tf.cast(tf.reduce_sum(tf.ones_like(x[0, :3])), tf.int32)
            return tf.while_loop(lambda i, _: i < steps, lambda i, y: (i + 1, tf.tanh(y @ w + b)), (0, x))[1]

        return fn

    def while_accumulate(k, tf):
        def fn(x):
            def body(i, acc):
                return i + 1, acc.write(i, x[:, i] * tf.cast(i, x.dtype))

            n = tf.shape(x)[1]
            _, acc = tf.while_loop(lambda i, _: i < n, body, (0, tf.TensorArray(x.dtype, size=n)))
            return acc.stack()

        return fn

    def map_fn(k, tf):
        return lambda x: tf.map_fn(lambda row: tf.reduce_max(row) * row, x)

    return [
        Case("tf.cond[data-dependent, outer weight]", "control flow", _fn(cond), (X,)),
        Case("tf.case", "control flow", _fn(case), (X,)),
        Case("tf.switch_case", "control flow", _fn(switch), (X, Arg((1,), "int32", 0, 3, batch=False))),
        Case("tf.while_loop[outer weights]", "control flow", _fn(while_outer), (X,)),
        Case("tf.while_loop[TensorArray]", "control flow", _fn(while_accumulate), (X,)),
        Case("tf.map_fn", "control flow", _fn(map_fn), (X,)),
    ]


# --- other TF ops models use --------------------------------------------------------------------


def _tf_op_cases() -> list[Case]:
    c = []

    def add(name, make, *args, **kw):
        c.append(Case(name, "tf ops", _fn(make), args, **kw))

    add("tf.math.erfc", lambda k, tf: tf.math.erfc, X)
    add("tf.math.lgamma", lambda k, tf: tf.math.lgamma, POSITIVE)
    add("tf.math.digamma", lambda k, tf: tf.math.digamma, POSITIVE)
    add("tf.math.reduce_euclidean_norm", lambda k, tf: lambda x: tf.math.reduce_euclidean_norm(x, axis=1), X)
    add(
        "tf.math.cumsum[exclusive,reverse]",
        lambda k, tf: lambda x: tf.math.cumsum(x, 1, exclusive=True, reverse=True),
        X,
    )
    add("tf.math.floormod", lambda k, tf: lambda a: tf.math.floormod(a * 5.0, 1.5), X)
    add(
        "tf.math.truncatediv[int]",
        lambda k, tf: lambda a: tf.truncatediv(a, 3),
        Arg((2, 6), "int32", -9, 9),
    )
    add(
        "tf.bitwise.bitwise_and",
        lambda k, tf: lambda a: tf.bitwise.bitwise_and(a, 6),
        Arg((2, 6), "int32", 0, 16),
    )
    add(
        "tf.bitwise.left_shift",
        lambda k, tf: lambda a: tf.bitwise.left_shift(a, 2),
        Arg((2, 6), "int32", 0, 16),
    )
    add("tf.math.is_nan", lambda k, tf: lambda x: tf.math.is_nan(tf.math.log(x)), X)
    add("tf.where[coordinates]", lambda k, tf: lambda x: tf.where(x > 0.5), Arg((3, 4), batch=False))
    add("tf.unique", lambda k, tf: lambda i: tf.unique(i)[0], Arg((8,), "int32", 0, 4, batch=False))
    add("tf.sort[descending]", lambda k, tf: lambda x: tf.sort(x, direction="DESCENDING"), X)
    add("tf.argsort", lambda k, tf: lambda x: tf.argsort(x), X)
    add(
        "tf.reverse_sequence",
        lambda k, tf: lambda x, n: tf.reverse_sequence(x, n, 1, 0),
        SEQUENCE,
        Arg((2,), "int32", 1, 8, batch=False),
    )
    add("tf.linalg.band_part", lambda k, tf: lambda x: tf.linalg.band_part(x, 1, 2), Arg((2, 5, 5)))
    add("tf.linalg.diag_part", lambda k, tf: tf.linalg.diag_part, Arg((2, 4, 4)))
    add("tf.linalg.diag", lambda k, tf: tf.linalg.diag, X)
    add("tf.linalg.det", lambda k, tf: lambda x: tf.linalg.det(x + 3.0 * tf.eye(4)), Arg((2, 4, 4)))
    add("tf.linalg.inv", lambda k, tf: lambda x: tf.linalg.inv(x + 3.0 * tf.eye(4)), Arg((2, 4, 4)))
    add(
        "tf.linalg.matmul[adjoint_b]",
        lambda k, tf: lambda a: tf.linalg.matmul(a, a, adjoint_b=True),
        Arg((2, 4, 5)),
    )
    add(
        "tf.einsum[attention]",
        lambda k, tf: lambda q, v: tf.einsum("bqhd,bkhd->bhqk", q, v),
        Arg((2, 5, 2, 4)),
        Arg((2, 6, 2, 4)),
    )
    add("tf.nn.l2_normalize", lambda k, tf: lambda x: tf.nn.l2_normalize(x, axis=-1), X)
    add("tf.nn.local_response_normalization", lambda k, tf: tf.nn.local_response_normalization, IMAGE)
    add("tf.nn.bias_add", lambda k, tf: lambda x: tf.nn.bias_add(x, tf.constant([0.1, -0.2, 0.3])), IMAGE)
    add("tf.nn.moments", lambda k, tf: lambda x: tf.nn.moments(x, [1, 2]), IMAGE)
    add(
        "tf.nn.conv2d[explicit pads]",
        lambda k, tf: (
            lambda x: tf.nn.conv2d(x, tf.ones((3, 3, 3, 2)) * 0.1, 1, [[0, 0], [1, 2], [2, 0], [0, 0]])
        ),
        IMAGE,
    )
    add(
        "tf.nn.max_pool_with_argmax",
        lambda k, tf: lambda x: tf.nn.max_pool_with_argmax(x, 2, 2, "SAME")[0],
        IMAGE,
    )
    add(
        "tf.image.resize[antialias]",
        lambda k, tf: lambda x: tf.image.resize(x, (4, 4), antialias=True),
        IMAGE,
    )
    add("tf.image.resize[area]", lambda k, tf: lambda x: tf.image.resize(x, (4, 4), method="area"), IMAGE)
    add(
        "tf.image.crop_and_resize",
        lambda k, tf: lambda x: tf.image.crop_and_resize(x, [[0.1, 0.1, 0.8, 0.9]], [0], (4, 4)),
        Arg((1, 8, 8, 3), batch=False),
    )
    add(
        "tf.image.non_max_suppression",
        lambda k, tf: lambda b, s: tf.image.non_max_suppression(b, s, 3, 0.5),
        Arg((6, 4), low=0, high=1, batch=False),
        Arg((6,), low=0, high=1, batch=False),
    )
    add("tf.strided_slice[masks]", lambda k, tf: lambda x: x[..., tf.newaxis, 1:-1:2, 0], SEQUENCE)
    add("tf.slice[dynamic size]", lambda k, tf: lambda x: tf.slice(x, [0, 1], [-1, tf.shape(x)[1] - 2]), X)
    add("tf.roll[two axes]", lambda k, tf: lambda x: tf.roll(x, [1, -2], [1, 2]), SEQUENCE)
    add("tf.clip_by_norm", lambda k, tf: lambda x: tf.clip_by_norm(x, 0.5, axes=[1]), X)
    add("tf.math.reduce_logsumexp", lambda k, tf: lambda x: tf.math.reduce_logsumexp(x, 1), X)
    add(
        "tf.math.bincount",
        lambda k, tf: lambda i: tf.math.bincount(i, minlength=10),
        Arg((12,), "int32", 0, 10, batch=False),
    )
    add(
        "tf.math.segment_sum[sorted ids]",
        lambda k, tf: lambda x: tf.math.segment_sum(x, [0, 1, 1, 3]),
        Arg((4, 3), batch=False),
    )
    add("tf.cast[bool]", lambda k, tf: lambda x: tf.cast(tf.cast(x > 0, tf.int32) + 1, tf.float32), X)
    add("tf.math.reduce_all", lambda k, tf: lambda x: tf.reduce_all(x > -0.9, axis=1), X)
    add("tf.random-free dropout[inference]", lambda k, tf: lambda x: tf.nn.dropout(x, 0.0), X)
    add("tf.math.angle", lambda k, tf: lambda a, b: tf.math.angle(tf.complex(a, b)), X, X)
    add("tf.signal.frame", lambda k, tf: lambda x: tf.signal.frame(x, 4, 2), Arg((2, 16)))
    add("tf.signal.hann_window", lambda k, tf: lambda x: x * tf.signal.hann_window(8), Arg((2, 8)))
    return c


# Cases that fail today, with the reason (docs/coverage.md lists them; the sweep fails when one of
# them passes, so this list cannot go stale): case name -> (reason, opsets where it fails, or all).
KNOWN_FAILURES: dict[str, tuple[str, tuple[int, ...]]] = {
    "keras.ops.erfinv": ("ONNX has no inverse error function; tf2onnx has no Erfinv handler", ()),
    "tf.math.lgamma": ("ONNX has no log-gamma; tf2onnx has no Lgamma handler", ()),
    "tf.math.digamma": ("ONNX has no digamma; tf2onnx has no Digamma handler", ()),
    "tf.linalg.inv": ("ONNX has no matrix inverse (only onnxruntime's contrib domain has one)", ()),
    "tf.math.angle": ("the angle of a complex tensor needs atan2, which ONNX lacks", ()),
    "tf.image.resize[antialias]": (
        "TF computes an antialiased resize with ScaleAndTranslate, which tf2onnx does not convert "
        "(opset 18 Resize has `antialias`: the next step)",
        (),
    ),
    "tf.bitwise.bitwise_and": (
        "ONNX has BitwiseAnd from opset 18; the export error says to set `opset: 18`",
        (17,),
    ),
    "keras.ops.bitwise_and": (
        "ONNX has BitwiseAnd from opset 18; the export error says to set `opset: 18`",
        (17,),
    ),
    "keras.ops.bitwise_or": (
        "ONNX has BitwiseOr from opset 18; the export error says to set `opset: 18`",
        (17,),
    ),
    "keras.ops.bitwise_xor": (
        "ONNX has BitwiseXor from opset 18; the export error says to set `opset: 18`",
        (17,),
    ),
    "keras.ops.nextafter": ("ONNX has no nextafter; tf2onnx has no NextAfter handler", ()),
}


def all_cases() -> list[Case]:
    cases = (
        _keras_op_cases()
        + _keras_op_specials()
        + _keras_layer_cases()
        + _mask_cases()
        + _fft_cases()
        + _tensor_cases()
        + _control_flow_cases()
        + _tf_op_cases()
    )
    cases = [
        replace(c, known=KNOWN_FAILURES[c.name][0], known_opsets=KNOWN_FAILURES[c.name][1])
        if c.name in KNOWN_FAILURES
        else c
        for c in cases
    ]
    missing = set(KNOWN_FAILURES) - {c.name for c in cases}
    if missing:
        raise ValueError(f"known export sweep failures name no case: {sorted(missing)}")
    names = [c.name for c in cases]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise ValueError(f"export sweep cases named twice: {sorted(duplicates)}")
    return cases


def uncovered() -> dict[str, list[str]]:
    """The public keras.ops functions and keras.layers classes of the installed Keras that no case
    names, so the sweep's report says how much of Keras it covers rather than implying all of it."""
    import inspect

    keras = _k()
    names = {c.name.split("[")[0] for c in all_cases()}
    covered_ops = {n[len("keras.ops.") :] for n in names if n.startswith("keras.ops.")}
    covered_layers = set()
    for name in names:
        if name.startswith("keras.layers."):
            covered_layers |= set(
                name[len("keras.layers.") :].replace("(", " ").replace(")", " ").replace(",", " ").split()
            )
    # an alias (AvgPool2D, conjugate) is covered when the object it names is
    covered_ops |= {
        n for n, f in vars(keras.ops).items() if any(f is getattr(keras.ops, c, None) for c in covered_ops)
    }
    covered_layers |= {
        n
        for n, c in vars(keras.layers).items()
        if any(c is getattr(keras.layers, d, None) for d in covered_layers)
    }
    ops = sorted(
        n
        for n, f in vars(keras.ops).items()
        if not n.startswith("_") and callable(f) and not inspect.isclass(f)
    )
    layers = sorted(
        n
        for n, c in vars(keras.layers).items()
        if inspect.isclass(c) and issubclass(c, keras.layers.Layer) and not n.startswith("_")
    )
    return {
        "keras.ops": [n for n in ops if n not in covered_ops],
        "keras.ops total": ops,
        "keras.layers": [n for n in layers if n not in covered_layers],
        "keras.layers total": layers,
    }
