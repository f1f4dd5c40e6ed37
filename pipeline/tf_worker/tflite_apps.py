""".tflite models shaped as applications ship them (configs/zoos/tflite-apps.yaml): a batch fixed at
1, float16 or pruned (sparse) weights, PReLU and hard-swish blocks, transposed-convolution decoders,
outputs in pixel units. No trained weights can be downloaded here, so each model is a small Keras
network of that app's architecture, fitted for a few steps on seeded synthetic data (its BatchNorm
statistics and weights move off their initial values), then converted as the app's build does.
Each builder returns the bytes of the .tflite file.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

IMAGE = 64  # pixels a side


def _fit_briefly(keras, model, seed: int) -> None:
    """A few steps of fit on synthetic targets: the weights an app ships are trained, not initial."""
    rng = np.random.default_rng(seed)
    images = rng.random((8, *model.input_shape[1:]), dtype=np.float32)
    targets = [rng.standard_normal((8, *o.shape[1:])).astype(np.float32) for o in model.outputs]
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=["mse"] * len(targets))  # bounded steps
    model.fit(images, targets, batch_size=1, epochs=1, verbose=0)


def _to_tflite(model, float16: bool = False, sparse: bool = False) -> bytes:
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if float16:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    if sparse:
        converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    return converter.convert()


def _image(keras):
    return keras.Input((IMAGE, IMAGE, 3), batch_size=1, name="image")


def _face_landmarks(keras) -> bytes:
    """A landmark model (MediaPipe face-mesh style): PReLU after every convolution (shared over space,
    as those models set it), depthwise residual blocks, 16 landmarks in pixel units and a presence
    score."""
    layers = keras.layers
    image = _image(keras)
    h = layers.PReLU(shared_axes=[1, 2])(layers.Conv2D(16, 3, strides=2, padding="same")(image))
    for filters in (16, 32, 32):
        branch = layers.Conv2D(filters, 1)(layers.DepthwiseConv2D(3, padding="same")(h))
        if branch.shape[-1] != h.shape[-1]:
            h = layers.Conv2D(filters, 1)(h)
        h = layers.PReLU(shared_axes=[1, 2])(layers.Add()([branch, h]))
        h = layers.MaxPooling2D(2)(h)
    features = layers.Flatten()(h)
    landmarks = layers.Dense(32, name="landmarks_unit")(features)
    landmarks = layers.Rescaling(float(IMAGE), name="landmarks")(landmarks)  # pixel units
    presence = layers.Dense(1, activation="sigmoid", name="presence")(features)
    model = keras.Model(image, [landmarks, presence])
    _fit_briefly(keras, model, seed=11)
    return _to_tflite(model)


def _selfie_segmentation(keras) -> bytes:
    """A segmentation model (selfie-segmentation style): a hard-swish encoder, a transposed-convolution
    decoder with a skip connection, a one-channel sigmoid mask at the input's resolution; float16
    weights, as such apps ship to phones."""
    layers = keras.layers
    image = _image(keras)
    e1 = layers.Activation("hard_swish")(layers.Conv2D(16, 3, strides=2, padding="same")(image))
    e2 = layers.Activation("hard_swish")(layers.Conv2D(32, 3, strides=2, padding="same")(e1))
    d1 = layers.Conv2DTranspose(16, 3, strides=2, padding="same", activation="relu")(e2)
    d1 = layers.Add()([d1, e1])
    mask = layers.Conv2DTranspose(1, 3, strides=2, padding="same", activation="sigmoid", name="mask")(d1)
    model = keras.Model(image, mask)
    _fit_briefly(keras, model, seed=12)
    return _to_tflite(model, float16=True)


def _box_detector(keras) -> bytes:
    """A single-shot detector head (BlazeFace style): per anchor of an 8x8 grid, a box decoded to
    pixel units (anchor centre plus an offset, times the stride) and a score."""
    layers = keras.layers
    image = _image(keras)
    h = image
    for filters in (16, 24, 32):
        h = layers.BatchNormalization()(layers.Conv2D(filters, 3, strides=2, padding="same")(h))
        h = layers.ReLU()(h)
    offsets = layers.Reshape((64, 4))(layers.Conv2D(4, 1)(h))
    scores = layers.Activation("sigmoid", name="scores")(layers.Reshape((64, 1))(layers.Conv2D(1, 1)(h)))
    grid = (np.stack(np.meshgrid(np.arange(8), np.arange(8)), -1).reshape(1, 64, 2) + 0.5) * (IMAGE / 8)
    anchors = np.concatenate([grid, np.full((1, 64, 2), IMAGE / 8)], -1).astype(np.float32)
    boxes = keras.ops.add(layers.Rescaling(IMAGE / 8)(offsets), anchors)  # strides -> pixels, from anchors
    model = keras.Model(image, [boxes, scores])
    _fit_briefly(keras, model, seed=13)
    return _to_tflite(model)


def _pruned_classifier(keras) -> bytes:
    """An image classifier with pruned weights (80 % of the Dense kernel's 1x4 blocks and of the
    pointwise convolution's weights zero), which TFLite's converter then stores sparse."""
    layers = keras.layers
    image = _image(keras)
    h = layers.ReLU(6.0)(layers.Conv2D(16, 3, strides=2, padding="same")(image))
    h = layers.ReLU(6.0)(layers.Conv2D(32, 1)(layers.DepthwiseConv2D(3, padding="same")(h)))
    logits = layers.Dense(10, name="logits")(layers.GlobalAveragePooling2D()(h))
    model = keras.Model(image, logits)
    _fit_briefly(keras, model, seed=14)
    rng = np.random.default_rng(14)
    for layer in model.layers:
        if isinstance(layer, layers.Dense) or (
            isinstance(layer, layers.Conv2D) and layer.kernel_size == (1, 1)
        ):
            kernel, bias = layer.get_weights()
            flat = kernel.reshape(-1, 4, kernel.shape[-1]) if kernel.shape[-2] % 4 == 0 else None
            if isinstance(layer, layers.Dense) and flat is not None:
                kernel = (flat * (rng.random((flat.shape[0], 1, flat.shape[2])) > 0.8)).reshape(kernel.shape)
            else:
                kernel = kernel * (rng.random(kernel.shape) > 0.8)
            layer.set_weights([kernel, bias])
    return _to_tflite(model, sparse=True)


def _hair_segmentation(keras) -> bytes:
    """A segmentation model as MediaPipe ships them (hair, selfie): its decoder's transposed
    convolutions are MediaPipe's custom op Convolution2DTransposeBias, which only MediaPipe's runtime
    registers (the file needs a `tflite_custom_ops` meaning to run anywhere else)."""
    layers = keras.layers
    image = _image(keras)
    e1 = layers.ReLU()(layers.Conv2D(16, 3, strides=2, padding="same")(image))
    e2 = layers.ReLU()(layers.Conv2D(32, 3, strides=2, padding="same")(e1))
    d1 = layers.Add()([layers.Conv2DTranspose(16, 4, strides=2, padding="same")(e2), e1])
    logits = layers.Conv2DTranspose(2, 3, strides=2, padding="same")(layers.ReLU()(d1))
    model = keras.Model(image, layers.Softmax(name="mask")(logits))
    _fit_briefly(keras, model, seed=15)
    return as_mediapipe_transpose_convs(_to_tflite(model))


def as_mediapipe_transpose_convs(content: bytes) -> bytes:
    """Every TRANSPOSE_CONV with a bias as MediaPipe's converter writes it: custom op
    Convolution2DTransposeBias, inputs (data, weights OHWI, bias), options three raw int32s
    (padding 1 same / 2 valid, stride width, stride height)."""
    import struct

    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
    custom = schema.OperatorCodeT()
    custom.builtinCode = custom.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
    custom.customCode = b"Convolution2DTransposeBias"
    custom.version = 1
    model.operatorCodes.append(custom)
    transpose = {
        i for i, c in enumerate(model.operatorCodes) if c.builtinCode == schema.BuiltinOperator.TRANSPOSE_CONV
    }
    for subgraph in model.subgraphs:
        for op in subgraph.operators:
            if op.opcodeIndex not in transpose or len(op.inputs) < 4 or op.inputs[3] < 0:
                continue
            options = op.builtinOptions
            assert not options.fusedActivationFunction, "the custom op has no fused activation"
            padding = 1 if options.padding == schema.Padding.SAME else 2
            _, weights, data, bias = op.inputs
            op.opcodeIndex = len(model.operatorCodes) - 1
            op.inputs = [data, weights, bias]
            op.builtinOptionsType, op.builtinOptions = schema.BuiltinOptions.NONE, None
            op.customOptions = list(struct.pack("<iii", padding, options.strideW, options.strideH))
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


BUILDERS = {
    "tflite_app.face_landmarks": _face_landmarks,
    "tflite_app.selfie_segmentation": _selfie_segmentation,
    "tflite_app.box_detector": _box_detector,
    "tflite_app.pruned_classifier": _pruned_classifier,
    "tflite_app.hair_segmentation": _hair_segmentation,
}
