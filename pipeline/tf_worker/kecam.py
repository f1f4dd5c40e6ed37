"""Models of a third-party Keras 2 library, keras-cv-attention-models ("kecam"), by zoo id
`kecam.<module>.<Model>`, as their users save them: a SavedModel (what TF Serving and most
deployments keep), or, with the suffix `.h5`, a legacy Keras .h5 file (which only loads where the
library's layers are registered, as its users load it).

The library builds with `tf.keras` bound to tf_keras (Keras 2), so these ids run in the Keras 2 TF
worker (formats.needs_keras2). Its models bring their own layers (ChannelAffine, attention with
relative position tables, neighbourhood attention, rotary embeddings, custom activations) and call
TF ops directly; no weights can be downloaded here, so each is built with `pretrained=None` from a
seed, and the constants Keras starts from are drawn as for the other zoos (builtin_models.py).
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np

from pipeline.errors import ConfigError

PREFIX = "kecam."
H5_SUFFIX = ".h5"
DEFAULT_IMAGE = (64, 64, 3)
NUM_CLASSES = 10
INSTALL = "`make setup` installs it, or `pip install --no-deps keras-cv-attention-models==1.4.3 ftfy tqdm`"


def is_kecam_id(model_id: str) -> bool:
    return model_id.startswith(PREFIX)


def build(model_id: str, input_shape: tuple[int, ...] | None, seed: int, workdir: Path, redraw: bool) -> Path:
    """The saved model file (`.h5`) or SavedModel directory for `model_id`, written into `workdir`."""
    import tensorflow as tf

    if not isinstance(tf.keras.layers.Layer(), _tf_keras_layer()):
        raise ConfigError(f"{model_id} is a Keras 2 model: it must be built where tf.keras is tf_keras")
    name = model_id[len(PREFIX) :]
    as_h5 = name.endswith(H5_SUFFIX)
    name = name[: -len(H5_SUFFIX)] if as_h5 else name
    constructor = _constructor(model_id, name)
    import tf_keras

    # Layer names count up per session: a fresh one names the input `input_1` whatever was built
    # before in this worker (a config names inputs), and frees the previous model.
    tf_keras.backend.clear_session()
    tf_keras.utils.set_random_seed(seed)
    shape = tuple(input_shape) if input_shape else DEFAULT_IMAGE
    # Logits, not the default softmax: a softmax over random logits is flat (all near 0.1) and
    # hides a conversion error under any absolute tolerance. (VOLO has no such argument: logits.)
    kwargs = dict(input_shape=shape, pretrained=None, num_classes=NUM_CLASSES, classifier_activation=None)
    try:
        try:
            model = constructor(**kwargs)
        except TypeError as exc:
            if "classifier_activation" not in str(exc):
                raise
            del kwargs["classifier_activation"]
            model = constructor(**kwargs)
    except Exception as exc:  # the library's own check of the input size
        raise ConfigError(f"{model_id} cannot be built with input shape {shape}: {exc}") from None
    if redraw:
        _draw_constants(model, np.random.default_rng(seed))
    if as_h5:
        path = workdir / "source.h5"
        model.save(path)
    else:
        path = workdir / "source_saved_model"
        tf.saved_model.save(model, str(path))
    return path


def register_layers() -> None:
    """Import the library so that its layers are registered with tf_keras (what loading its .h5 needs)."""
    try:
        import keras_cv_attention_models  # noqa: F401
    except ImportError:
        raise ConfigError(f"kecam.* models need keras-cv-attention-models: {INSTALL}") from None


def _constructor(model_id: str, name: str):
    module_name, _, model_name = name.rpartition(".")
    register_layers()
    try:
        module = importlib.import_module(f"keras_cv_attention_models.{module_name}")
    except ImportError:
        module = None
    constructor = getattr(module, model_name, None) if module_name and model_name[:1].isupper() else None
    if constructor is None:
        raise ConfigError(
            f"unknown zoo id '{model_id}': give kecam.<module>.<Model>[.h5] with a module and model of "
            "keras-cv-attention-models, such as kecam.mobilevit.MobileViT_XXS"
        )
    return constructor


def _tf_keras_layer():
    import tf_keras

    return tf_keras.layers.Layer


# The library's layer scale (and ResMLP's affine): a per-channel weight that starts at 1e-6 or 1,
# drawn like the residual scales of the other zoos so that every block's output is visible.
_SCALE_LAYERS = ("ChannelAffine",)


def _draw_constants(model, rng: np.random.Generator) -> None:
    from pipeline.tf_worker.builtin_models import randomize_constant_weights

    randomize_constant_weights(model, rng)
    for layer in _all_layers(model):
        if type(layer).__name__ in _SCALE_LAYERS:
            for weight in layer.weights:
                if weight.name.split("/")[-1].startswith("weight"):
                    weight.assign(rng.uniform(0.1, 0.3, size=tuple(weight.shape)).astype(weight.dtype.name))


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)
