"""Builds the tiny real models the tests convert, one per accepted format.

Run as a script (`python tests/build_models.py OUT_DIR`) so the pytest process never imports
TensorFlow: tests also load torch, and the two cannot share a process.
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# A subclassed keras.Model's code: saved from here, and given back as the user's custom_objects file.
SUBCLASSED_MODEL_FILE = Path(__file__).parent / "subclassed_classifier.py"

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def keras_two_inputs(out: Path) -> None:
    """Keras 3 functional model: inputs declared in non-alphabetical order, two outputs."""
    import keras

    keras.utils.set_random_seed(1)
    tokens = keras.Input((6,), name="zeta")
    image = keras.Input((8, 8, 3), name="alpha")
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(image)
    x = keras.layers.GlobalAveragePooling2D()(x)
    y = keras.layers.Dense(4, activation="tanh")(tokens)
    joined = keras.layers.Concatenate()([x, y])
    logits = keras.layers.Dense(3, bias_initializer="random_normal", name="logits")(joined)
    score = keras.layers.Dense(1, activation="sigmoid", name="score")(joined)
    keras.Model([tokens, image], [logits, score]).save(out / "two_inputs.keras")


def keras_dict_inputs(out: Path) -> None:
    """Keras 3 functional model built on a dict of inputs and returning a dict, as KerasHub's
    backbones are: it must be called with that dict, not a list."""
    import keras

    keras.utils.set_random_seed(2)
    token_ids = keras.Input((None,), dtype="int32", name="token_ids")
    padding_mask = keras.Input((None,), dtype="int32", name="padding_mask")
    embedded = keras.layers.Embedding(20, 8)(token_ids)
    mask = keras.ops.expand_dims(keras.ops.cast(padding_mask, "float32"), -1)
    pooled = keras.ops.sum(embedded * mask, axis=1) / (keras.ops.sum(mask, axis=1) + 1.0)
    inputs = {"token_ids": token_ids, "padding_mask": padding_mask}
    outputs = {"sequence": keras.layers.Dense(4)(embedded), "pooled": keras.layers.Dense(2)(pooled)}
    keras.Model(inputs, outputs).save(out / "dict_inputs.keras")


def keras_for_localization(out: Path) -> None:
    """A convolution (NHWC in TF, NCHW in ONNX), a sigmoid gate and logits: the localisation tests
    break one node of it and expect that node to be named."""
    import keras

    keras.utils.set_random_seed(6)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3), name="image"),
            keras.layers.Conv2D(4, 3, activation="relu", bias_initializer="random_normal", name="conv"),
            keras.layers.GlobalAveragePooling2D(name="pool"),
            keras.layers.Dense(6, activation="sigmoid", name="gate"),
            keras.layers.Dense(3, name="logits"),
        ]
    )
    model.save(out / "localize.keras")


def masked_text(out: Path) -> None:
    """Issue 31's reproducer: Embedding(mask_zero=True) -> LSTM(32) -> Dense, the text classifier
    every tutorial builds; its tokens come right-padded with 0."""
    import keras

    keras.utils.set_random_seed(31)
    model = keras.Sequential(
        [
            keras.Input((None,), dtype="int32", name="tokens"),
            keras.layers.Embedding(200, 16, mask_zero=True, name="embedding"),
            keras.layers.LSTM(32, name="lstm"),
            keras.layers.Dense(3, name="logits"),
        ]
    )
    model.save(out / "masked_text.keras")


def activations(out: Path) -> None:
    """Dense layers with Keras activations that onnx2torch imports as torch.nn activation modules."""
    import keras

    keras.utils.set_random_seed(7)
    features = keras.Input((6,), name="features")
    h = features
    for activation in ("softplus", "softsign", "selu", "elu", "mish", "log_softmax"):
        h = keras.layers.Dense(6, activation=activation, name=f"dense_{activation}")(h)
    keras.Model(features, h).save(out / "activations.keras")


def keras2_h5(out: Path) -> None:
    import tf_keras

    tf_keras.utils.set_random_seed(2)
    model = tf_keras.Sequential(
        [
            tf_keras.layers.Dense(16, activation="relu", input_shape=(5,)),
            tf_keras.layers.BatchNormalization(),
            tf_keras.layers.Dense(2),
        ]
    )
    model.save(out / "legacy.h5")


class _Affine(tf.Module):
    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(3)
        self.w = tf.Variable(rng.normal(size=(4, 3)).astype("float32"))
        self.b = tf.Variable(rng.normal(size=(3,)).astype("float32"))

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, 4], tf.float32, name="x"),
            tf.TensorSpec([None, 3], tf.float32, name="bias"),
        ]
    )
    def serve(self, x, bias):
        h = tf.matmul(x, self.w) + self.b + bias
        return {"sum": tf.reduce_sum(h, axis=1), "activation": tf.nn.relu(h)}


def saved_model(out: Path) -> None:
    module = _Affine()
    tf.saved_model.save(module, str(out / "affine_savedmodel"), signatures={"serving_default": module.serve})


def frozen_graph(out: Path) -> None:
    rng = np.random.default_rng(4)
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 6], name="features")
        w = tf.constant(rng.normal(size=(6, 2)).astype("float32"))
        tf.nn.softmax(tf.matmul(x, w) + 0.5, name="probabilities")
    (out / "frozen.pb").write_bytes(graph.as_graph_def().SerializeToString())


def tflite(out: Path) -> None:
    import keras

    keras.utils.set_random_seed(5)
    model = keras.Sequential(
        [
            keras.Input((10, 10, 1)),
            keras.layers.Conv2D(3, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(4),
        ]
    )
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    (out / "small.tflite").write_bytes(converter.convert())


class _Special(tf.Module):
    """Two TF ops tf2onnx has no handler for, so the export stage must list both with counts."""

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
    def serve(self, x):
        return {"y": tf.math.lgamma(x + 1.0) + tf.math.lgamma(x + 2.0) + tf.math.digamma(x + 1.0)}


class _RandomNoise(tf.Module):
    """tf.random.uniform exports to ONNX RandomUniformLike, which no converter handles (a random draw
    cannot be compared across frameworks). Scaled by zero so TF and onnxruntime still agree."""

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
    def serve(self, x):
        return {"y": x + 0.0 * tf.random.uniform(tf.shape(x))}


class _Branching(tf.Module):
    """A tf.cond on the data (ONNX If) reading a weight from outside its branches."""

    def __init__(self):
        self.w = tf.Variable(np.random.default_rng(3).normal(size=(3, 3)).astype("float32"))

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
    def serve(self, x):
        return {"y": tf.cond(tf.reduce_sum(x) > 3.0, lambda: tf.tanh(x @ self.w), lambda: x * 2.0 - 1.0)}


def branching(out: Path) -> None:
    module = _Branching()
    tf.saved_model.save(module, str(out / "branching"), signatures={"serving_default": module.serve})


def unsupported(out: Path) -> None:
    for name, module in (("tf_unsupported", _Special()), ("torch_unsupported", _RandomNoise())):
        tf.saved_model.save(module, str(out / name), signatures={"serving_default": module.serve})


def keras_batchnorm(out: Path) -> None:
    """Conv -> BatchNorm (Keras epsilon 1e-3, momentum 0.99) -> pooling -> Dense. The running variances
    are large, so a port with torch's default eps=1e-5 still matches within tolerance: `verify` must
    report the epsilon difference anyway."""
    import keras

    keras.utils.set_random_seed(7)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3), name="image"),
            keras.layers.Conv2D(4, 3, use_bias=False, name="conv"),
            keras.layers.BatchNormalization(name="bn"),
            keras.layers.ReLU(),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2, name="head"),
        ]
    )
    bn = model.get_layer("bn")
    rng = np.random.default_rng(7)
    bn.gamma.assign(rng.uniform(0.5, 1.5, 4).astype("float32"))
    bn.beta.assign(rng.uniform(-0.2, 0.2, 4).astype("float32"))
    bn.moving_mean.assign(rng.uniform(-0.5, 0.5, 4).astype("float32"))
    bn.moving_variance.assign(rng.uniform(50.0, 100.0, 4).astype("float32"))
    model.save(out / "batchnorm.keras")


def keras_layer_zoo(out: Path) -> None:
    """One of each layer `verify` transfers that the demo and family ports do not cover: Embedding,
    Conv1D, Bidirectional LSTM with sequences, two stacked LSTMs, SimpleRNN, SeparableConv2D,
    Conv2DTranspose, Conv3D (tests/ports/layer_zoo_port.py ports it)."""
    import keras

    keras.utils.set_random_seed(8)
    tokens = keras.Input((7,), dtype="int32", name="tokens")
    image = keras.Input((8, 8, 3), name="image")
    volume = keras.Input((4, 4, 4, 2), name="volume")
    x = keras.layers.Embedding(20, 8, name="embed")(tokens)
    x = keras.layers.Conv1D(6, 3, padding="same", activation="relu", name="conv1d")(x)
    x = keras.layers.Bidirectional(keras.layers.LSTM(5, return_sequences=True), name="bilstm")(x)
    x = keras.layers.LSTM(4, return_sequences=True, name="lstm_a")(x)
    x = keras.layers.LSTM(4, return_sequences=True, name="lstm_b")(x)
    x = keras.layers.SimpleRNN(3, name="rnn")(x)
    y = keras.layers.SeparableConv2D(5, 3, depth_multiplier=2, name="separable")(image)
    y = keras.layers.Conv2DTranspose(4, 3, strides=2, padding="same", name="transpose")(y)
    y = keras.layers.GlobalAveragePooling2D()(y)
    z = keras.layers.Conv3D(3, 2, name="conv3d")(volume)
    z = keras.layers.GlobalAveragePooling3D()(z)
    joined = keras.layers.Concatenate()([x, y, z])
    model = keras.Model([tokens, image, volume], keras.layers.Dense(2, name="head")(joined))
    model.save(out / "layer_zoo.keras")


def untrusted(out: Path) -> None:
    """Models whose loading would run Python code stored in the file (Lambda layers), and one whose
    outputs are NaN and Inf."""
    import keras
    import tf_keras

    inputs = keras.Input((4,))
    outputs = keras.layers.Lambda(lambda x: x * 2.0 + 1.0)(keras.layers.Dense(3)(inputs))
    keras.Model(inputs, outputs).save(out / "lambda.keras")
    legacy = tf_keras.Sequential(
        [tf_keras.layers.Dense(3, input_shape=(4,)), tf_keras.layers.Lambda(lambda x: x * 2.0 + 1.0)]
    )
    legacy.save(out / "lambda.h5")
    dense = keras.layers.Dense(3)
    model = keras.Sequential([keras.Input((4,)), dense])
    dense.set_weights([np.array([[np.nan, 1.0, 0.0]] * 4, "float32"), np.array([0, np.inf, 0], "float32")])
    model.save(out / "nan_outputs.keras")

    # A custom layer class: its code is not in the file (tests give it as `custom_objects`).
    @keras.saving.register_keras_serializable(package="tests")
    class Scale(keras.layers.Layer):
        def call(self, x):
            return x * 3.0

    keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), Scale()]).save(out / "custom_layer.keras")

    # A subclassed model (no functional graph), its code given the same way.
    import runpy

    classifier = runpy.run_path(str(SUBCLASSED_MODEL_FILE))["Classifier"]()
    classifier(np.zeros((1, 9, 7, 3), "float32"))  # as a user's first call or fit records the shape
    classifier.save(out / "subclassed.keras")


def compiled(out: Path) -> None:
    """Models saved after compile(): the training setup tf2torch carries over (issue: training)."""
    import keras

    from pipeline.tf_worker import builtin_models as zoo

    cnn = zoo.build("demo.cnn", seed=0)
    cnn.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.05, momentum=0.9),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
    )
    cnn.save(out / "train_cnn.keras")
    keras.utils.set_random_seed(4)
    mlp = keras.Sequential(
        [
            keras.Input((6,), name="features"),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.BatchNormalization(momentum=0.9),
            keras.layers.Dropout(0.3),
            keras.layers.Dense(3),
        ]
    )
    mlp.compile(
        optimizer=keras.optimizers.Adam(learning_rate=0.01, epsilon=1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    mlp.save(out / "train_mlp.keras")
    lstm = zoo.build("demo.lstm", seed=0)
    lstm.compile(optimizer=keras.optimizers.RMSprop(learning_rate=0.01), loss="mse", metrics=["mae"])
    lstm.save(out / "train_lstm.keras")
    _issue_training_models(keras, out)
    _regularized_models(keras, out)
    _fresh_models(keras, out)
    # Settings with no mapping: they must come out as TODOs, never silently replaced.
    odd = keras.Sequential([keras.Input((4,), name="x"), keras.layers.Dense(3, activation="softmax")])
    # Still without a mapping (docs/training.md's sweep table): a MultiOptimizer, the Circle loss.
    choice = keras.optimizers.OptimizerMap(keras.optimizers.SGD(), {".*": keras.optimizers.Adam()})
    odd.compile(optimizer=keras.optimizers.MultiOptimizer(choice), loss="circle", metrics=["auc"])
    odd.save(out / "train_unmapped.keras")
    # Mixed precision: Keras computes a layer in float16 with float32 weights.
    mixed = keras.Sequential(
        [
            keras.Input((4,), name="x"),
            keras.layers.Dense(8, activation="relu", dtype="mixed_float16", name="half"),
            keras.layers.Dense(3, dtype="float32", name="out"),
        ]
    )
    mixed.compile(optimizer="sgd", loss="mse")
    mixed.save(out / "train_mixed_precision.keras")


def _regularized_models(keras, out: Path) -> None:
    """Issue 32: what Keras's fit() adds to the loss. Every weight regularizer class on an MLP trained
    with AdamW, CosineDecay and clipnorm; and an activity regularizer, which train.py does not add."""
    layers, regularizers = keras.layers, keras.regularizers
    keras.utils.set_random_seed(32)
    features = keras.Input((12,), name="features")
    h = layers.Dense(
        16,
        activation="relu",
        kernel_regularizer=regularizers.L2(0.01),
        bias_regularizer=regularizers.L1(0.02),
        bias_initializer="random_normal",
        name="hidden",
    )(features)
    h = layers.Dense(8, activation="tanh", kernel_regularizer=regularizers.L1L2(0.003, 0.004), name="mid")(h)
    h = layers.Dense(
        6, kernel_regularizer=regularizers.OrthogonalRegularizer(0.05, mode="columns"), name="cols"
    )(h)
    logits = layers.Dense(3, kernel_regularizer=regularizers.OrthogonalRegularizer(0.02), name="rows")(h)
    model = keras.Model(features, logits)
    schedule = keras.optimizers.schedules.CosineDecay(0.01, decay_steps=10)
    model.compile(optimizer=keras.optimizers.AdamW(learning_rate=schedule, clipnorm=1.0), loss="mse")
    model.save(out / "train_regularized_adamw.keras")

    # An activity regularizer train.py cannot add: its layer sits in a nested model, whose output
    # tensor is no tensor of the outer model, so no node of model.py is known to compute it.
    features = keras.Input((12,), name="features")
    block = keras.Sequential(
        [
            keras.Input((12,)),
            layers.Dense(16, activation="relu", activity_regularizer=regularizers.L2(0.05), name="hidden"),
        ],
        name="block",
    )
    model = keras.Model(features, layers.Dense(3, name="out")(block(features)))
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05), loss="mse")
    model.save(out / "train_activity_regularizer.keras")

    # Activity regularizers train.py adds: on a Dense after its activation (and before a Dropout), on
    # a Dense without one, on a Conv2D's channels-first output.
    features = keras.Input((12,), name="features")
    h = layers.Dense(16, activation="relu", activity_regularizer=regularizers.L2(0.05), name="hidden")(
        features
    )
    h = layers.Dense(8, activity_regularizer=regularizers.L1L2(0.01, 0.02), name="mid")(
        layers.Dropout(0.3)(h)
    )
    model = keras.Model(features, layers.Dense(3, name="out")(h))
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05), loss="mse")
    model.save(out / "train_activity_penalties.keras")
    image = keras.Input((10, 10, 2), name="image")
    h = layers.Conv2D(4, 3, activity_regularizer=regularizers.L1(0.01), name="conv")(image)
    model = keras.Model(image, layers.Dense(2, name="out")(layers.GlobalAveragePooling2D()(h)))
    model.compile(optimizer="adam", loss="mse")
    model.save(out / "train_activity_conv.keras")

    sequence = keras.Input((20, 3), name="sequence")
    h = layers.Conv1D(8, 3, activation="relu", name="conv")(sequence)
    h = layers.LSTM(12, name="lstm")(h)
    regressor = keras.Model(sequence, layers.Dense(2, name="value")(h))
    regressor.compile(
        optimizer=keras.optimizers.Nadam(learning_rate=0.01, global_clipnorm=0.5),
        loss=keras.losses.Huber(delta=0.5),
    )
    regressor.save(out / "train_conv1d_lstm_nadam.keras")


def _fresh_models(keras, out: Path) -> None:
    """Issue 32's reproducers: freshly compiled models whose parameters start at Keras's constants
    (LayerNormalization beta 0, BatchNormalization gamma 1 and beta 0, attention biases 0), which
    the export's graph optimisers fold away unless every variable is tied by identity."""
    layers = keras.layers
    keras.utils.set_random_seed(0)

    def compiled_model(x, h, name):
        model = keras.Model(x, layers.Dense(4)(layers.GlobalMaxPooling2D()(h) if len(h.shape) == 4 else h))
        model.compile(optimizer="rmsprop", loss="mse")
        model.save(out / name)

    x = keras.Input((14, 14, 1), name="image")
    compiled_model(x, layers.LayerNormalization()(layers.Conv2D(6, 3)(x)), "train_fresh_layernorm.keras")
    x = keras.Input((14, 14, 1), name="image")
    h = layers.BatchNormalization()(layers.BatchNormalization()(layers.Conv2D(6, 3)(x)))
    compiled_model(x, h, "train_fresh_two_batchnorms.keras")
    x = keras.Input((5, 8), name="tokens")
    h = layers.LayerNormalization()(layers.MultiHeadAttention(2, 4)(x, x))
    compiled_model(x, layers.GlobalAveragePooling1D()(h), "train_fresh_attention.keras")


def _issue_training_models(keras, out: Path) -> None:
    """The models of issue "Training parity that holds beyond the test models", with Keras's own
    initial weights (zero biases, unit gammas: what a user's freshly built model has)."""
    layers = keras.layers
    keras.utils.set_random_seed(0)
    image = keras.Input((16, 16, 2), name="image")
    h = layers.Flatten()(layers.Conv2D(8, 3, activation="relu")(image))
    conv = keras.Model(image, layers.Dense(3, name="probs")(h))
    conv.compile(optimizer=keras.optimizers.SGD(learning_rate=0.005), loss="mse")
    conv.save(out / "train_conv_sgd.keras")

    image = keras.Input((16, 16, 2), name="image")
    h = layers.MaxPooling2D()(layers.Conv2D(8, 3, activation="relu")(image))
    pooled = keras.Model(image, layers.Dense(3, activation="softmax", name="probs")(layers.Flatten()(h)))
    pooled.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.05, momentum=0.9, nesterov=True),
        loss="categorical_crossentropy",
    )
    pooled.save(out / "train_conv_pool_nesterov.keras")

    features = keras.Input((12,), name="features")
    h = layers.Dense(16, activation="relu")(features)
    heads = {"value": layers.Dense(2, name="value")(h), "kind": layers.Dense(4, name="kind")(h)}
    two_heads = keras.Model(features, heads)
    two_heads.compile(
        optimizer=keras.optimizers.Adam(learning_rate=0.01),
        loss={"value": "mse", "kind": keras.losses.SparseCategoricalCrossentropy(from_logits=True)},
        loss_weights={"value": 1.0, "kind": 0.3},
    )
    two_heads.save(out / "train_two_heads.keras")

    gru = keras.Sequential(
        [
            keras.Input((None,), dtype="int32", name="tokens"),
            layers.Embedding(20, 8),
            layers.GRU(12),
            layers.Dense(5),
        ]
    )
    gru.compile(
        optimizer=keras.optimizers.Adam(learning_rate=0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    gru.save(out / "train_gru_text.keras")

    image = keras.Input((12, 12, 3), name="image")
    stem = layers.ReLU()(layers.BatchNormalization()(layers.Conv2D(8, 3, padding="same")(image)))
    h = layers.ReLU()(layers.BatchNormalization()(layers.Conv2D(8, 3, padding="same")(stem)))
    h = layers.BatchNormalization()(layers.Conv2D(8, 3, padding="same")(h))
    h = layers.ReLU()(layers.Add()([stem, h]))
    logits = layers.Dense(4)(layers.GlobalAveragePooling2D()(h))
    residual = keras.Model(image, logits)
    residual.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.05, momentum=0.9),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True),
    )
    residual.save(out / "train_residual_bn.keras")

    # A learning-rate schedule, decoupled weight decay with momentum, Dropout between the layers.
    features = keras.Input((10,), name="features")
    h = layers.Dropout(0.25)(layers.Dense(16, activation="relu")(features))
    scheduled = keras.Model(features, layers.Dense(3)(h))
    schedule = keras.optimizers.schedules.ExponentialDecay(0.05, decay_steps=2, decay_rate=0.5)
    scheduled.compile(
        optimizer=keras.optimizers.SGD(learning_rate=schedule, momentum=0.9, weight_decay=0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    scheduled.save(out / "train_schedule_decay_dropout.keras")


class _WithConstantOutput(tf.Module):
    """Issue 33: an output that does not depend on the inputs (tf.range of constants)."""

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
    def serve(self, x):
        return {"scaled": x * 2.0, "steps": tf.range(5, dtype=tf.float32)}


def constant_outputs(out: Path) -> None:
    """The same model with a constant output as a SavedModel, a frozen graph and a .tflite."""
    module = _WithConstantOutput()
    tf.saved_model.save(
        module, str(out / "constant_output_savedmodel"), signatures={"serving_default": module.serve}
    )
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 3], name="x")
        tf.identity(x * 2.0, name="scaled")
        tf.identity(tf.range(5, dtype=tf.float32), name="steps")
    (out / "constant_output.pb").write_bytes(graph.as_graph_def().SerializeToString())
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [module.serve.get_concrete_function()], module
    )
    (out / "constant_output.tflite").write_bytes(converter.convert())


def fixed_batch_app(out: Path) -> None:
    """Issue 33: a .tflite as a landmark app ships it: a batch fixed at 1, PReLU (per channel and per
    element), depthwise and strided convolutions, coordinates in pixel units."""
    import keras

    keras.utils.set_random_seed(6)
    layers = keras.layers
    image = keras.Input((32, 32, 3), batch_size=1)
    h = layers.PReLU(shared_axes=[1, 2])(layers.Conv2D(8, 3, strides=2, padding="same")(image))
    h = layers.PReLU(shared_axes=[1, 2])(
        layers.Conv2D(8, 1)(layers.DepthwiseConv2D(3, padding="same")(h)) + h
    )
    h = layers.PReLU()(layers.Conv2D(16, 3, padding="same")(layers.MaxPooling2D(2)(h)))
    coordinates = layers.Reshape((-1,))(layers.Conv2D(2, 8, padding="valid")(h))
    score = layers.Dense(1, activation="sigmoid")(layers.Flatten()(h))
    model = keras.Model(image, [coordinates * 32.0, score])
    (out / "landmarks_batch1.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())


def sparse_tflite(out: Path) -> None:
    """Issue 33: pruned weights that TFLite's converter stores sparse: a 1x1 convolution whose zeros
    leave whole input channels of an output (CSR over the channels) and a Dense layer pruned in
    blocks of 4 inputs (a block map), as EXPERIMENTAL_SPARSITY writes them."""
    import keras

    keras.utils.set_random_seed(7)
    rng = np.random.default_rng(7)
    model = keras.Sequential(
        [keras.Input((6, 6, 16)), keras.layers.Conv2D(32, 1), keras.layers.Flatten(), keras.layers.Dense(8)]
    )
    conv, _, dense = model.layers
    kernel, bias = conv.get_weights()  # (1, 1, 16, 32)
    conv.set_weights([kernel * (rng.random((1, 1, 16, 32)) > 0.8), bias])
    kernel, bias = dense.get_weights()  # (1152, 8)
    blocks = kernel.reshape(-1, 4, 8) * (rng.random((kernel.shape[0] // 4, 1, 8)) > 0.8)
    dense.set_weights([blocks.reshape(kernel.shape), bias])
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    (out / "sparse_weights.tflite").write_bytes(converter.convert())


def keras2_custom_layer_h5(out: Path) -> None:
    """A Keras 2 .h5 with a custom layer, whose code (tests/test_keras2_h5.py) is written against
    `tf.keras` as Keras 2 users write it."""
    import tf_keras

    class Scale(tf_keras.layers.Layer):
        def __init__(self, factor=1.0, **kwargs):
            super().__init__(**kwargs)
            self.factor = factor

        def build(self, shape):
            self.w = self.add_weight(name="w", shape=(shape[-1],), initializer="ones")

        def call(self, x):
            return x * self.w * self.factor

        def get_config(self):
            return {**super().get_config(), "factor": self.factor}

    tf_keras.utils.set_random_seed(8)
    model = tf_keras.Sequential(
        [tf_keras.layers.Dense(6, input_shape=(4,)), Scale(2.5, name="scale"), tf_keras.layers.Dense(3)]
    )
    model.get_layer("scale").w.assign(np.random.default_rng(8).uniform(0.5, 1.5, 6).astype(np.float32))
    model.save(out / "custom_layer.h5")


class _Patches(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, 11, 9, 8], tf.float32, name="x")])
    def serve(self, x):
        return {
            "same": tf.image.extract_patches(x, [1, 3, 2, 1], [1, 2, 3, 1], [1, 2, 1, 1], "SAME"),
            "valid": tf.image.extract_patches(x, [1, 3, 3, 1], [1, 1, 1, 1], [1, 2, 2, 1], "VALID"),
        }


def patches_savedmodel(out: Path) -> None:
    """tf.image.extract_patches (neighbourhood attention's windows): SAME with strides and rates, and
    VALID 3x3 with rates (9 window positions), on 8 channels."""
    module = _Patches()
    tf.saved_model.save(module, str(out / "patches_savedmodel"), signatures={"serving_default": module.serve})


class _LongerTransposedConv(tf.Module):
    def __init__(self):
        rng = np.random.default_rng(9)
        self.kernel = tf.constant(rng.standard_normal((3, 3, 5, 4)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, 6, 6, 4], tf.float32, name="x")])
    def serve(self, x):
        batch = tf.shape(x)[0]
        # full length: (6 - 1) * 2 + 3 = 13; VALID takes up to 14 (stride - 1 longer), SAME 12
        valid = tf.nn.conv2d_transpose(x, self.kernel, [batch, 14, 13, 5], 2, "VALID")
        short_kernel = tf.nn.conv2d_transpose(x, self.kernel[:1, :1], [batch, 18, 18, 5], 3, "SAME")
        return {"valid": valid, "short_kernel": short_kernel}


def conv_transpose_longer(out: Path) -> None:
    """tf.nn.conv2d_transpose whose output is longer than the full transposed convolution (VOLO's
    fold; a 1x1 kernel at stride 3 with SAME)."""
    module = _LongerTransposedConv()
    tf.saved_model.save(
        module, str(out / "conv_transpose_longer"), signatures={"serving_default": module.serve}
    )


class _SixDimSoftmax(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, 2, 3, 2, 2, 4], tf.float32, name="x")])
    def serve(self, x):
        return tf.nn.softmax(x * 3.0, axis=-1)


def six_dim_softmax(out: Path) -> None:
    """A Softmax over a 6-D tensor (halo and outlook attention), which TF's oneDNN CPU kernel refuses."""
    module = _SixDimSoftmax()
    tf.saved_model.save(module, str(out / "six_dim_softmax"), signatures={"serving_default": module.serve})


class _ScaledRelu(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([1, 6], tf.float32, name="x")])
    def serve(self, x):
        return tf.nn.relu(x * 3.5)


def app_custom_op(out: Path) -> None:
    """Issue 33: a .tflite with an app runtime's own custom op, which no TFLite here registers:
    relu(x * 3.5) whose MUL is the custom op "AppScale" (input x, the factor as a raw float32 in its
    custom options)."""
    import struct

    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    module = _ScaledRelu()
    content = tf.lite.TFLiteConverter.from_concrete_functions(
        [module.serve.get_concrete_function()], module
    ).convert()
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
    custom = schema.OperatorCodeT()
    custom.builtinCode = custom.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
    custom.customCode, custom.version = b"AppScale", 1
    model.operatorCodes.append(custom)
    (mul,) = [
        op
        for op in model.subgraphs[0].operators
        if model.operatorCodes[op.opcodeIndex].builtinCode == schema.BuiltinOperator.MUL
    ]
    graph_inputs = list(model.subgraphs[0].inputs)
    mul.opcodeIndex = len(model.operatorCodes) - 1
    mul.inputs = [i for i in mul.inputs if i in graph_inputs]
    mul.builtinOptionsType, mul.builtinOptions = schema.BuiltinOptions.NONE, None
    mul.customOptions = list(struct.pack("<f", 3.5))
    (out / "app_custom_op.tflite").write_bytes(bytes(flatbuffer_utils.convert_object_to_bytearray(model)))


BUILDERS = (
    keras_two_inputs,
    keras_dict_inputs,
    keras_layer_zoo,
    keras_batchnorm,
    keras_for_localization,
    masked_text,
    activations,
    keras2_h5,
    saved_model,
    frozen_graph,
    tflite,
    unsupported,
    branching,
    untrusted,
    compiled,
    constant_outputs,
    fixed_batch_app,
    sparse_tflite,
    app_custom_op,
    keras2_custom_layer_h5,
    patches_savedmodel,
    conv_transpose_longer,
    six_dim_softmax,
)

if __name__ == "__main__":
    target = Path(sys.argv[1])
    target.mkdir(parents=True, exist_ok=True)
    for build in BUILDERS:
        build(target)
