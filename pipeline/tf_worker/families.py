"""One small model per layer family that commonly breaks TF -> ONNX -> PyTorch conversion.

Built from code (zoo ids `family.<name>`), so no binary files ship with the project. Each builder
takes the keras module and returns an uncompiled model with named inputs.
"""

from __future__ import annotations


def _mlp(keras):
    return keras.Sequential(
        [
            keras.Input((10,), name="features"),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(16, activation="tanh"),
            keras.layers.Dense(4),
        ]
    )


def _gru(keras):
    return keras.Sequential(
        [keras.Input((None, 6), name="sequence"), keras.layers.GRU(12), keras.layers.Dense(3)]
    )


def _bidirectional_gru(keras):
    return keras.Sequential(
        [
            keras.Input((None, 6), name="sequence"),
            keras.layers.Bidirectional(keras.layers.GRU(8)),
            keras.layers.Dense(3),
        ]
    )


def _bidirectional_lstm(keras):
    return keras.Sequential(
        [
            keras.Input((None, 6), name="sequence"),
            keras.layers.Bidirectional(keras.layers.LSTM(8, return_sequences=True)),
            keras.layers.LSTM(8, go_backwards=True),
            keras.layers.Dense(3),
        ]
    )


def _masked_lstm(keras):
    # Token 0 is padding: with integer inputs drawn from [0, 10) about one step in ten is masked in the
    # first sample batch; the others are right-padded rows (pipeline/common/inputs.py).
    return keras.Sequential(
        [
            keras.Input((None,), dtype="int32", name="tokens"),
            keras.layers.Embedding(10, 4, mask_zero=True),
            keras.layers.LSTM(8),
            keras.layers.Dense(3),
        ]
    )


def _masked_bidirectional(keras):
    """Token 0 masks the step in both directions; the first Bidirectional returns sequences, which
    makes Keras zero the masked steps' outputs (zero_output_for_mask)."""
    return keras.Sequential(
        [
            keras.Input((None,), dtype="int32", name="tokens"),
            keras.layers.Embedding(30, 6, mask_zero=True),
            keras.layers.Bidirectional(keras.layers.GRU(8, return_sequences=True)),
            keras.layers.Bidirectional(keras.layers.LSTM(6)),
            keras.layers.Dense(3),
        ]
    )


def _masking_sequence(keras):
    """Float time steps padded with Masking's mask_value: stacked LSTM and GRU returning sequences,
    then a masked average over the real steps."""
    return keras.Sequential(
        [
            keras.Input((None, 5), name="frames"),
            keras.layers.Masking(mask_value=0.0),
            keras.layers.LSTM(8, return_sequences=True),
            keras.layers.GRU(6, return_sequences=True),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(3),
        ]
    )


def _transformer_block(keras):
    tokens = keras.Input((None, 32), name="tokens")
    attended = keras.layers.MultiHeadAttention(num_heads=4, key_dim=8)(tokens, tokens)
    x = keras.layers.LayerNormalization()(tokens + attended)
    hidden = keras.layers.Dense(64, activation=lambda t: keras.activations.gelu(t, approximate=False))(x)
    x = keras.layers.LayerNormalization()(x + keras.layers.Dense(32)(hidden))
    return keras.Model(tokens, keras.layers.Dense(4)(keras.layers.GlobalAveragePooling1D()(x)))


def _transformer_encoder(keras):
    """Two encoder blocks (4-head self-attention, LayerNorm, a ReLU MLP) over 64 features: the
    benchmark's small Transformer encoder."""
    tokens = keras.Input((None, 64), name="tokens")
    x = tokens
    for _ in range(2):
        attended = keras.layers.MultiHeadAttention(num_heads=4, key_dim=16)(x, x)
        x = keras.layers.LayerNormalization()(x + attended)
        hidden = keras.layers.Dense(128, activation="relu")(x)
        x = keras.layers.LayerNormalization()(x + keras.layers.Dense(64)(hidden))
    return keras.Model(tokens, keras.layers.Dense(10)(keras.layers.GlobalAveragePooling1D()(x)))


def _grouped_conv(keras):
    image = keras.Input((16, 16, 8), name="image")
    x = keras.layers.Conv2D(16, 3, groups=4, padding="same")(image)
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)
    return keras.Model(image, keras.layers.Dense(5)(keras.layers.GlobalAveragePooling2D()(x)))


def _tf_padding(keras):
    """The padding TF writes before strided layers: 'same' with a stride pads one more row and
    column after the input than before it (a full convolution; depthwise k3 and k5, the MobileNet
    and EfficientNet downsampling), ZeroPadding2D before a 'valid' (here dilated) depthwise
    convolution, and the ResNet stem's ZeroPadding2D before a max pool of ReLU6 outputs."""
    image = keras.Input((64, 64, 4), name="image")
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu6")(image)
    x = keras.layers.MaxPooling2D(3, strides=2)(keras.layers.ZeroPadding2D(1)(x))
    x = keras.layers.DepthwiseConv2D(3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.DepthwiseConv2D(5, strides=2, padding="same", depth_multiplier=2)(x)
    x = keras.layers.ZeroPadding2D(((2, 0), (0, 2)))(x)
    x = keras.layers.DepthwiseConv2D(3, dilation_rate=2)(x)
    return keras.Model(image, keras.layers.Dense(5)(keras.layers.GlobalAveragePooling2D()(x)))


def _normalization(keras):
    import numpy as np

    norm = keras.layers.Normalization(mean=np.linspace(0.1, 0.9, 5), variance=np.linspace(1.0, 2.0, 5))
    features = keras.Input((5,), name="features")
    x = keras.layers.Rescaling(2.0, offset=-1.0)(norm(features))
    return keras.Model(features, keras.layers.Dense(3)(x))


def _global_max_pooling(keras):
    image = keras.Input((12, 12, 3), name="image")
    sequence = keras.Input((20, 4), name="sequence")
    a = keras.layers.GlobalMaxPooling2D()(keras.layers.Conv2D(6, 3)(image))
    b = keras.layers.GlobalMaxPooling1D()(keras.layers.Conv1D(6, 3)(sequence))
    return keras.Model([image, sequence], keras.layers.Dense(2)(keras.layers.Concatenate()([a, b])))


def _dynamic_same_conv(keras):
    image = keras.Input((None, None, 3), name="image")
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(image)
    x = keras.layers.Conv1D(4, 4, padding="same")(keras.layers.Reshape((-1, 8))(x))
    return keras.Model(image, keras.layers.GlobalAveragePooling1D()(x))


def _top_k(keras):
    class TopK(keras.layers.Layer):
        def call(self, x):
            return keras.ops.top_k(x, k=3)

    features = keras.Input((10,), name="features")
    values, indices = TopK()(keras.layers.Dense(10)(features))
    return keras.Model(features, [values, indices])


def _while_loop(keras):
    import tensorflow as tf

    class Power(keras.layers.Layer):
        """Multiplies by a learned matrix a data-dependent number of times (a tf.while_loop)."""

        def build(self, input_shape):
            self.kernel = self.add_weight(shape=(input_shape[-1], input_shape[-1]), initializer="orthogonal")

        def call(self, x):
            steps = tf.cast(tf.reduce_sum(tf.ones_like(x[0, :2])), tf.int32)  # 2, but computed in the graph
            _, result = tf.while_loop(
                lambda i, _: i < steps, lambda i, y: (i + 1, tf.tanh(y @ self.kernel)), (0, x)
            )
            return result

    features = keras.Input((6,), name="features")
    return keras.Model(features, Power()(features))


def _subclassed_model(keras):
    """A subclassed keras.Model: no functional graph, so `model.inputs` does not exist; the input
    comes from the shape it was built with and the name of `call`'s argument."""

    class Classifier(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = keras.layers.Conv2D(8, 3, padding="same", activation="relu")
            self.pool = keras.layers.GlobalAveragePooling2D()
            self.head = keras.layers.Dense(4)

        def call(self, image):
            return self.head(self.pool(self.conv(image)) * 2.0)

    model = Classifier()
    model(keras.Input((None, None, 3)))  # builds every layer; `model.build(shape)` would not
    return model


def _bidirectional_rnn_dropout(keras):
    """Dropout and recurrent dropout are training-only, but Keras still builds their masks in the
    inference graph (a `training` switch around random ops)."""
    return keras.Sequential(
        [
            keras.Input((None, 6), name="sequence"),
            keras.layers.Bidirectional(
                keras.layers.LSTM(8, dropout=0.2, recurrent_dropout=0.2, return_sequences=True)
            ),
            keras.layers.Bidirectional(keras.layers.GRU(8, dropout=0.1, recurrent_dropout=0.1)),
            keras.layers.Dense(3),
        ]
    )


def _conv_transpose_decoder(keras):
    """Stride-2 'same' Conv2DTranspose (asymmetric padding in ONNX), as in segmentation and VAE decoders."""
    image = keras.Input((8, 8, 4), name="latent")
    x = keras.layers.Conv2DTranspose(8, 3, strides=2, padding="same", activation="relu")(image)
    x = keras.layers.Conv2DTranspose(6, 4, strides=2, padding="same")(x)
    x = keras.layers.Conv2DTranspose(3, 5, strides=(2, 1), padding="valid")(x)
    return keras.Model(image, x)


def _causal_decoder_lm(keras):
    """A decoder-only language model: token and position embeddings, two blocks of causally masked
    self-attention, next-token logits."""
    vocab, width = 50, 32

    class TokenAndPosition(keras.layers.Layer):
        def __init__(self):
            super().__init__()
            self.token = keras.layers.Embedding(vocab, width)
            self.position = keras.layers.Embedding(64, width)

        def call(self, tokens):
            return self.token(tokens) + self.position(keras.ops.arange(keras.ops.shape(tokens)[1]))

    tokens = keras.Input((None,), dtype="int32", name="tokens")
    x = TokenAndPosition()(tokens)
    for _ in range(2):
        normed = keras.layers.LayerNormalization(epsilon=1e-5)(x)
        attended = keras.layers.MultiHeadAttention(num_heads=4, key_dim=8)(
            normed, normed, use_causal_mask=True
        )
        x = x + attended
        hidden = keras.layers.Dense(64, activation="gelu")(keras.layers.LayerNormalization(epsilon=1e-5)(x))
        x = x + keras.layers.Dense(width)(hidden)
    return keras.Model(tokens, keras.layers.Dense(vocab)(keras.layers.LayerNormalization()(x)))


def _bert_style_encoder(keras):
    """A BERT-style encoder: token, segment and position embeddings, two blocks of bidirectional
    self-attention under a padding mask (token 0 is padding), post-LayerNorm with a tanh-GELU MLP,
    and a pooled first token."""
    vocab, width = 40, 32

    class Embeddings(keras.layers.Layer):
        def __init__(self):
            super().__init__()
            self.token = keras.layers.Embedding(vocab, width)
            self.segment = keras.layers.Embedding(2, width)
            self.position = keras.layers.Embedding(64, width)

        def call(self, tokens, segments):
            positions = keras.ops.arange(keras.ops.shape(tokens)[1])
            return self.token(tokens) + self.segment(segments) + self.position(positions)

    tokens = keras.Input((None,), dtype="int32", name="tokens")
    segments = keras.Input((None,), dtype="int32", name="segments")
    padding = keras.ops.cast(keras.ops.not_equal(tokens, 0), "bool")
    mask = keras.ops.logical_and(padding[:, None, :], padding[:, :, None])
    x = keras.layers.LayerNormalization(epsilon=1e-12)(Embeddings()(tokens, segments))
    for _ in range(2):
        attended = keras.layers.MultiHeadAttention(num_heads=4, key_dim=8)(x, x, attention_mask=mask)
        x = keras.layers.LayerNormalization(epsilon=1e-12)(x + attended)
        hidden = keras.layers.Dense(64, activation=lambda t: keras.activations.gelu(t, approximate=True))(x)
        x = keras.layers.LayerNormalization(epsilon=1e-12)(x + keras.layers.Dense(width)(hidden))
    pooled = keras.layers.Dense(width, activation="tanh")(x[:, 0])
    return keras.Model([tokens, segments], keras.layers.Dense(2)(pooled))


def _signature_named_tflite(keras) -> bytes:
    """A .tflite whose signature calls its input `image` (the tensor is `serving_default_image:0`)."""
    import tensorflow as tf

    model = keras.Sequential(
        [
            keras.Input((8, 8, 3), name="image"),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2),
        ]
    )
    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def _quantized_tflite(keras, representative: bool) -> bytes:
    import numpy as np
    import tensorflow as tf

    model = keras.Sequential(
        [
            keras.Input((16,), name="features"),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(32),
            keras.layers.Dense(4),
        ]
    )
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if representative:  # int8 weights and activations, float input and output
        rng = np.random.default_rng(0)
        converter.representative_dataset = lambda: (
            [rng.random((1, 16), dtype=np.float32)] for _ in range(32)
        )
    return converter.convert()


def _dynamic_range_tflite(keras) -> bytes:
    """int8 weights, activations quantized at run time (TFLite's default optimisation)."""
    return _quantized_tflite(keras, representative=False)


def _int8_tflite(keras) -> bytes:
    return _quantized_tflite(keras, representative=True)


BUILDERS = {
    "family.mlp": _mlp,
    "family.gru": _gru,
    "family.bidirectional_gru": _bidirectional_gru,
    "family.bidirectional_lstm": _bidirectional_lstm,
    "family.masked_lstm": _masked_lstm,
    "family.masked_bidirectional": _masked_bidirectional,
    "family.masking_sequence": _masking_sequence,
    "family.transformer_block": _transformer_block,
    "family.transformer_encoder": _transformer_encoder,
    "family.grouped_conv": _grouped_conv,
    "family.tf_padding": _tf_padding,
    "family.normalization": _normalization,
    "family.global_max_pooling": _global_max_pooling,
    "family.dynamic_same_conv": _dynamic_same_conv,
    "family.top_k": _top_k,
    "family.while_loop": _while_loop,
    "family.subclassed_model": _subclassed_model,
    "family.bidirectional_rnn_dropout": _bidirectional_rnn_dropout,
    "family.conv_transpose_decoder": _conv_transpose_decoder,
    "family.causal_decoder_lm": _causal_decoder_lm,
    "family.bert_style_encoder": _bert_style_encoder,
    # these return the bytes of a .tflite file rather than a Keras model
    "family.dynamic_range_tflite": _dynamic_range_tflite,
    "family.int8_tflite": _int8_tflite,
    "family.signature_named_tflite": _signature_named_tflite,
}
