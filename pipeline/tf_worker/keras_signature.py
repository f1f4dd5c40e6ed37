"""The inputs and outputs of a Keras model, functional or subclassed.

A functional or Sequential model declares them (`model.inputs`, `model.outputs`). A subclassed
`keras.Model` has no graph: its inputs are the shapes of its first call (which a loaded `.keras` file
replays from its build config), with any batch size, named after `call`'s arguments; its outputs
are known only by tracing `call`.
"""

from __future__ import annotations

import inspect

import tensorflow as tf

from pipeline.common.inputs import DetectedPadding, TensorInfo
from pipeline.errors import ModelFileError

# Arguments of `call` that Keras fills itself; they are never model inputs.
_KERAS_CALL_ARGUMENTS = {"training", "mask", "kwargs", "args"}


def functional_inputs(model) -> list | None:
    """`model.inputs` of a functional model; None for a subclassed one (where reading it raises)."""
    try:
        return list(model.inputs) or None
    except (AttributeError, ValueError):
        return None


def declared_inputs(model) -> list[TensorInfo]:
    tensors = functional_inputs(model)
    if tensors is not None:
        rows, padded = vocabularies(model, tensors), paddings(model, tensors)
        return [
            TensorInfo(
                t.name,
                tf.as_dtype(t.dtype).name,
                tensor_dims(t.shape),
                vocabulary=rows.get(id(t)),
                padding=padded.get(id(t)),
            )
            for t in tensors
        ]
    shapes = _build_shapes(model)
    names = [
        p.name
        for p in inspect.signature(model.call).parameters.values()
        if p.name not in _KERAS_CALL_ARGUMENTS and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    dtype = tf.as_dtype(getattr(model, "input_dtype", None) or "float32").name
    if len(shapes) == 1 and len(names) == 1:
        return [TensorInfo(names[0], dtype, shapes[0])]
    stem = names[0] if names else "input"
    return [TensorInfo(f"{stem}_{i}", dtype, shape) for i, shape in enumerate(shapes)]


def vocabularies(model, tensors: list) -> dict[int, int]:
    """For each input tensor (by id) that an Embedding layer of the model takes directly: the table's
    row count, the ids it can look up (the smallest, if several tables read it). Token ids drawn past
    it would fail in TF's gather, so the config's `range` is checked against it."""
    import keras

    rows: dict[int, int] = {}
    for layer, tensor in _readers(model, tensors, keras.layers.Embedding):
        rows[id(tensor)] = min(rows.get(id(tensor), layer.input_dim), layer.input_dim)
    return rows


def paddings(model, tensors: list) -> dict[int, DetectedPadding]:
    """For each input tensor (by id) that a layer reads as padded sequences: token ids an Embedding
    looks up (id 0 pads them; with `mask_zero` the model masks it) and the input of a `Masking`
    layer (its `mask_value` fills a padded time step)."""
    import keras

    found: dict[int, DetectedPadding] = {}
    for layer, tensor in _readers(model, tensors, keras.layers.Masking):
        value = float(layer.mask_value)
        found[id(tensor)] = DetectedPadding(value, f"Masking '{layer.name}' (mask_value={value:g})")
    for layer, tensor in _readers(model, tensors, keras.layers.Embedding):
        if layer.mask_zero:
            found[id(tensor)] = DetectedPadding(0, f"Embedding '{layer.name}' (mask_zero=True)")
        else:
            found.setdefault(
                id(tensor), DetectedPadding(0, f"Embedding '{layer.name}' (0 as the padding id)")
            )
    # A custom layer that looks tokens up in an Embedding of its own (BERT-style embeddings, KerasHub's
    # TokenAndPositionEmbedding): which of its inputs the table reads is its code's business, so each
    # integer input it takes is padded with 0.
    for layer, tensor in _readers(model, tensors, keras.layers.Layer):
        inner = [
            s.name for s in layer._flatten_layers(include_self=False) if isinstance(s, keras.layers.Embedding)
        ]
        if inner and id(tensor) not in found and "int" in tf.as_dtype(tensor.dtype).name:
            tables = ", ".join(f"'{name}'" for name in inner)
            found[id(tensor)] = DetectedPadding(
                0, f"'{layer.name}' (Embedding {tables} inside; 0 as the padding id)"
            )
    return found


def _readers(model, tensors: list, layer_class: type):
    """(layer, input tensor) for each layer of this class that takes one of `tensors` directly."""
    wanted = {id(t) for t in tensors}
    for layer in model.layers:
        if not isinstance(layer, layer_class):
            continue
        for node in getattr(layer, "_inbound_nodes", ()):
            for tensor in node.input_tensors:
                if id(tensor) in wanted:
                    yield layer, tensor


def call_inputs(model, tensors: list):
    """`tensors`, in `model.inputs` order, packed the way the model's call takes them: a functional
    model built on a dict (or nested list) of inputs is called with that structure, as KerasHub
    backbones are; others with one tensor or a list."""
    import keras

    try:
        struct = model.input
    except (AttributeError, ValueError):  # subclassed: no declared structure
        struct = None
    if isinstance(struct, (dict, list, tuple)):
        return keras.tree.pack_sequence_as(struct, list(tensors))
    return list(tensors) if len(tensors) > 1 else tensors[0]


def output_count(model, inputs: list[TensorInfo]) -> int:
    if functional_inputs(model) is not None:
        return len(tf.nest.flatten(model.outputs))
    specs = [tf.TensorSpec(i.shape, i.dtype) for i in inputs]
    call = tf.function(lambda *args: model(call_inputs(model, args), training=False))
    return len(tf.nest.flatten(call.get_concrete_function(*specs).structured_outputs))


def _build_shapes(model) -> list[tuple[int | None, ...]]:
    recorded = getattr(model, "_build_shapes_dict", None) or {}
    if len(recorded) != 1:
        raise ModelFileError(
            f"{type(model).__name__} is a subclassed keras.Model that was never built, so its input "
            "shape is unknown; call `model.build(input_shape)` (or call the model once) before saving it"
        )
    shape = next(iter(recorded.values()))
    nested = isinstance(shape, (list, tuple)) and shape and isinstance(shape[0], (list, tuple))
    # The recorded shape is the first call's: its leading size was that call's batch, not a fixed one.
    return [_any_batch(tensor_dims(s)) for s in (shape if nested else [shape])]


def _any_batch(shape: tuple[int | None, ...] | None) -> tuple[int | None, ...] | None:
    return shape if not shape else (None, *shape[1:])


def tensor_dims(shape) -> tuple[int | None, ...] | None:
    shape = tf.TensorShape(shape)
    return None if shape.rank is None else tuple(shape.as_list())
