"""Loaders for every TensorFlow format, behind one small interface.

Each loader returns a TFModel: its declared inputs and output names in a fixed order, `run` to
compute reference outputs natively, `frozen_graph` for the optimized GraphDef that tf2onnx converts
(None for TFLite, which has none), and `to_onnx` to export it with tf2onnx. The ONNX graph's inputs
and outputs come back in the same order as `inputs` and `outputs`.
"""

from __future__ import annotations

import gc
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from pipeline import keras_archive  # noqa: E402
from pipeline.common.inputs import TensorInfo  # noqa: E402
from pipeline.config import InputSpec, ModelConfig  # noqa: E402
from pipeline.errors import ConfigError, ConversionError, ModelFileError, UsageError, first_line  # noqa: E402
from pipeline.tf_worker import (
    keras_signature,  # noqa: E402
    keras_trust,
)
from pipeline.tf_worker.keras_signature import tensor_dims  # noqa: E402

log = logging.getLogger("tf2torch.export")


class TFModel(Protocol):
    inputs: list[TensorInfo]
    outputs: list[str]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def to_onnx(self, opset: int, nchw_inputs: list[str], nchw_outputs: list[str]):  # -> onnx.ModelProto
        ...

    def frozen_graph(self) -> FrozenTFGraph | None: ...

    # Optional (not for TFLite): gradients of sum(project(name, shape) * output) over the outputs,
    # with respect to the named inputs.
    # def input_gradients(self, feeds, names, project) -> dict[str, np.ndarray]


def _projected_sum(output_names, outputs, project):
    """sum over float outputs of <project(name, shape), output>, in float64."""
    total = tf.constant(0.0, tf.float64)
    for name, value in zip(output_names, outputs, strict=True):
        if value.dtype.is_floating:
            direction = tf.constant(project(name, tuple(value.shape)))
            total += tf.reduce_sum(tf.cast(value, tf.float64) * direction)
    return total


def _tape_gradients(call, feeds, names, output_names, project) -> dict[str, np.ndarray]:
    tensors = {n: tf.constant(v) for n, v in feeds.items()}
    with tf.GradientTape() as tape:
        for name in names:
            tape.watch(tensors[name])
        total = _projected_sum(output_names, call(tensors), project)
    grads = tape.gradient(total, [tensors[n] for n in names])
    # An input the outputs do not depend on has no gradient: zero, as torch reports it.
    return {
        n: np.zeros_like(feeds[n]) if g is None else np.asarray(g) for n, g in zip(names, grads, strict=True)
    }


class FrozenTFGraph(NamedTuple):
    """What tf2onnx converts: a frozen, grappler-optimized GraphDef; its input and output tensors in
    the model's order; the renames giving ONNX graph inputs and outputs the model's names."""

    graph_def: Any  # its weights are Placeholders named after `weights`' keys
    weights: dict[str, np.ndarray]
    inputs: list[str]
    outputs: list[str]
    renames: dict[str, str]
    tables: Any = None

    def runnable_graph_def(self):
        """The GraphDef with the weights in it, as TensorFlow runs it."""
        from pipeline.tf_worker import tf_to_onnx

        return tf_to_onnx.with_weights(self.graph_def, self.weights)


def _positions(model, nchw_inputs, nchw_outputs) -> tuple[list[int], list[int]]:
    """Where the named inputs and outputs sit in the model's order (the frozen graph's order too)."""
    return (
        [i for i, t in enumerate(model.inputs) if t.name in nchw_inputs],
        [i for i, name in enumerate(model.outputs) if name in nchw_outputs],
    )


def graph_to_onnx(graph: FrozenTFGraph, opset: int, nchw: tuple[list[int], list[int]] = ([], [])):
    """`nchw`: positions of the inputs and outputs tf2onnx turns into NCHW (`layout: nchw`)."""
    from pipeline.tf_worker import tf_to_onnx

    return tf_to_onnx.graph_def_to_onnx(
        graph.graph_def,
        graph.weights,  # consumed
        graph.inputs,
        graph.outputs,
        graph.renames,
        opset,
        graph.tables,
        nchw=([graph.inputs[i] for i in nchw[0]], [graph.outputs[i] for i in nchw[1]]),
    )


# --- Keras 3, legacy Keras 2 (.h5) and built-in zoo models -------------------------------------


class KerasModel:
    """The export freezes the model's call in memory and then drops the model (its weights must not
    sit in memory twice while they are converted); a later stage that needs it (gradients) gets it
    back through `reload`."""

    def __init__(self, model, reload: Callable[[], Any] | None = None):
        self._model = model
        self._reload = reload
        self.inputs = keras_signature.declared_inputs(model)
        self.outputs = [f"output_{i}" for i in range(keras_signature.output_count(model, self.inputs))]

    @property
    def model(self):
        if self._model is None:
            self._model = self._reload()
        return self._model

    def fresh(self):
        """The model loaded anew (a stage that changed the one in memory needs it as the file has it)."""
        if self._reload is None:
            return self.model
        self._model = self._reload()
        return self._model

    def run(self, feeds):
        args = [feeds[i.name] for i in self.inputs]
        result = self.model(keras_signature.call_inputs(self.model, args), training=False)
        return {name: np.asarray(t) for name, t in zip(self.outputs, tf.nest.flatten(result), strict=True)}

    def input_gradients(self, feeds, names, project):
        def call(tensors):
            args = [tensors[i.name] for i in self.inputs]
            return tf.nest.flatten(self.model(keras_signature.call_inputs(self.model, args), training=False))

        return _tape_gradients(call, feeds, names, self.outputs, project)

    def to_onnx(self, opset, nchw_inputs=(), nchw_outputs=(), every_variable=False, drop_model=True):
        """`every_variable`: see tf_to_onnx.freeze_function; `drop_model`: free the Keras model once
        its call is frozen (a later stage reloads it)."""
        graph = self.frozen_graph(drop_model, every_variable)
        return graph_to_onnx(graph, opset, _positions(self, nchw_inputs, nchw_outputs))

    def write_weights(self, out: Path, sample: list | None = None) -> dict:
        """`sample`: one input set in the model's input order (Dropout layers' inputs are recorded)."""
        from pipeline.tf_worker import keras_weights

        return keras_weights.write(self.model, out, sample)

    def frozen_graph(self, drop_model: bool = False, every_variable: bool = False):
        try:
            frozen = self._frozen_call(every_variable)
        except Exception as exc:  # noqa: BLE001 - TensorFlow's freezer raises many types
            log.warning(
                "freezing the Keras model's call in memory failed (%s: %s); freezing its SavedModel "
                "export instead, which holds the weights in memory once more",
                type(exc).__name__,
                first_line(exc),
            )
            frozen = None
        if frozen is None:
            # model.export() writes a SavedModel whose variables tf2onnx's saved-model path freezes.
            with tempfile.TemporaryDirectory(prefix="tf2torch-export-") as tmp:
                self.model.export(tmp)  # prints a summary to stdout; the worker sends that to the log
                self._drop(drop_model)
                return saved_model_graph(
                    tmp, "serving_default", [i.name for i in self.inputs], self.outputs, every_variable
                )
        self._drop(drop_model)  # the frozen weights are the only copy from here on
        return optimized_graph(frozen, [i.name for i in self.inputs], self.outputs)

    def _frozen_call(self, every_variable: bool = False):
        """The model's inference call traced and frozen in this process (graph_def, weights, input and
        output tensors): no SavedModel written and loaded again, which holds the weights twice more."""
        from pipeline.tf_worker import tf_to_onnx

        model = self.model
        specs = [tf.TensorSpec(i.shape, i.dtype, name=_node_name(i.name)) for i in self.inputs]
        call = tf.function(lambda *args: model(keras_signature.call_inputs(model, args), training=False))
        return tf_to_onnx.freeze_function(call.get_concrete_function(*specs), every_variable)

    def _drop(self, drop_model: bool) -> None:
        if drop_model and self._reload is not None:
            self._model = None
            gc.collect()


def optimized_graph(frozen, input_names: list[str], output_names: list[str]) -> FrozenTFGraph:
    """A frozen call (graph_def, weights, input and output tensors) optimized for tf2onnx, its inputs
    and outputs renamed to the model's names."""
    from pipeline.tf_worker import tf_to_onnx

    graph_def, weights, in_tensors, out_tensors = frozen
    renames = dict(zip(in_tensors + out_tensors, input_names + output_names, strict=True))
    graph_def = tf_to_onnx.optimize_tf_graph(graph_def, in_tensors, out_tensors, weights)
    return FrozenTFGraph(graph_def, weights, in_tensors, out_tensors, renames)


class FunctionModel:
    """A `tf.function` and its input signature, converted in memory (no file): what the export
    sweep (pipeline/coverage/) feeds the export stage, one TF op or layer at a time."""

    def __init__(self, function, signature: list):
        self._function = function
        self._signature = signature
        self.inputs = [TensorInfo(s.name, s.dtype.name, tensor_dims(s.shape)) for s in signature]
        concrete = function.get_concrete_function(*signature)
        self.outputs = [f"output_{i}" for i in range(len(tf.nest.flatten(concrete.structured_outputs)))]

    def run(self, feeds):
        result = self._function(*[tf.constant(feeds[i.name]) for i in self.inputs])
        return {name: np.asarray(t) for name, t in zip(self.outputs, tf.nest.flatten(result), strict=True)}

    def frozen_graph(self):
        from pipeline.tf_worker import tf_to_onnx

        frozen = tf_to_onnx.freeze_function(self._function.get_concrete_function(*self._signature))
        return optimized_graph(frozen, [i.name for i in self.inputs], self.outputs)

    def to_onnx(self, opset, nchw_inputs=(), nchw_outputs=()):
        return graph_to_onnx(self.frozen_graph(), opset, _positions(self, nchw_inputs, nchw_outputs))


def load_keras(path: Path, trust: bool = False, custom: dict[str, type] | None = None) -> KerasModel:
    import keras

    # Before Keras opens it: a truncated archive (Keras would say "File not found"), members outside
    # its root, zip bombs, classes from modules outside Keras.
    keras_archive.inspect(path, frozenset(custom or {}))

    try:
        model = keras.models.load_model(path, compile=False, safe_mode=not trust, custom_objects=custom)
    except Exception as exc:  # keras raises many types for unreadable files
        if keras_trust.is_lambda_refusal(exc):
            raise keras_trust.lambda_refused(path) from None
        raise keras_trust.unknown_class(path, exc) or ModelFileError(
            f"Keras could not load {path}: {first_line(exc)}"
        ) from None
    return KerasModel(_ensure_built(model), reload=lambda: load_keras(path, trust, custom).model)


def load_h5(path: Path, trust: bool = False, custom: dict[str, type] | None = None) -> KerasModel:
    try:
        import tf_keras
    except ImportError:
        raise UsageError(
            "legacy Keras 2 .h5 files need the tf_keras package: run "
            "`.venv/bin/pip install --no-deps tf-keras==2.21.0` (make setup does this)"
        ) from None
    if not trust:
        keras_trust.check_h5_lambdas(path)
    try:
        model = tf_keras.models.load_model(path, compile=False, custom_objects=custom)
    except Exception as exc:
        raise keras_trust.unknown_class(path, exc) or ModelFileError(
            f"tf_keras could not load {path}: {first_line(exc)}"
        ) from None
    return KerasModel(model, reload=lambda: load_h5(path, trust, custom).model)


def _ensure_built(model):
    # A loaded Keras 3 model must have been called once before model.export() accepts it.
    tensors = keras_signature.functional_inputs(model)
    if not getattr(model, "built", True) and tensors is not None:
        model.build([t.shape for t in tensors])
    return model


# --- SavedModel -----------------------------------------------------------------------------


class SavedModel:
    def __init__(self, path: Path, signature: str):
        self.path = path
        self.signature = signature
        try:
            loaded = tf.saved_model.load(str(path))
        except Exception as exc:
            raise ModelFileError(
                f"TensorFlow could not load the SavedModel {path}: {first_line(exc)}"
            ) from None
        if signature not in loaded.signatures:
            available = ", ".join(sorted(loaded.signatures)) or "none"
            raise ConfigError(f"SavedModel {path} has no signature '{signature}'; it has: {available}")
        self._loaded = loaded  # keeps the variables alive for the concrete function
        self._fn = loaded.signatures[signature]
        specs = self._fn.structured_input_signature[1]
        # Signature functions take keyword arguments only; their flat order is sorted by name.
        tensors = _signature_tensor_names(path, signature)
        self.inputs = [
            TensorInfo(k, specs[k].dtype.name, tensor_dims(specs[k].shape), tensors.get(k, ()))
            for k in sorted(specs)
        ]
        self.outputs = sorted(self._fn.structured_outputs)

    def run(self, feeds):
        result = self._fn(**{name: tf.constant(value) for name, value in feeds.items()})
        return {name: result[name].numpy() for name in self.outputs}

    def input_gradients(self, feeds, names, project):
        def call(tensors):
            result = self._fn(**tensors)
            return [result[name] for name in self.outputs]

        return _tape_gradients(call, feeds, names, self.outputs, project)

    def to_onnx(self, opset, nchw_inputs=(), nchw_outputs=()):
        return graph_to_onnx(self.frozen_graph(), opset, _positions(self, nchw_inputs, nchw_outputs))

    def frozen_graph(self):
        return saved_model_graph(str(self.path), self.signature, [i.name for i in self.inputs], self.outputs)


def _signature_tensor_names(path: Path, signature: str) -> dict[str, tuple[str, ...]]:
    """A signature's input key -> its tensor's names (`image` -> `serving_default_image:0` and
    `serving_default_image`), as saved_model_cli and TF Serving show them."""
    from tensorflow.python.saved_model import loader_impl

    try:
        meta_graphs = loader_impl.parse_saved_model(str(path)).meta_graphs
    except Exception:  # noqa: BLE001 - the aliases are a convenience; the signature loaded already
        return {}
    names: dict[str, tuple[str, ...]] = {}
    for meta_graph in meta_graphs:
        if signature in meta_graph.signature_def:
            for key, info in meta_graph.signature_def[signature].inputs.items():
                if info.name and info.name != key:
                    names[key] = (info.name, info.name.split(":")[0])
    return names


def saved_model_graph(
    path: str,
    signature: str,
    input_order: list[str],
    output_order: list[str],
    every_variable: bool = False,
) -> FrozenTFGraph:
    """Freeze one signature; the ONNX graph's inputs and outputs are named after the signature's keys.
    `every_variable`: see tf_to_onnx.freeze_function."""
    from pipeline.tf_worker import tf_to_onnx

    graph_def, weights, in_tensors, out_tensors, renames, tables = tf_to_onnx.freeze_saved_model(
        path, signature, every_variable
    )
    keys_in = sorted(renames.get(t, t) for t in in_tensors)
    keys_out = sorted(renames.get(t, t) for t in out_tensors)
    if (keys_in, keys_out) != (sorted(input_order), sorted(output_order)):
        raise ConversionError(
            f"the SavedModel signature '{signature}' has inputs {keys_in} and outputs {keys_out}; "
            f"expected {sorted(input_order)} and {sorted(output_order)}"
        )
    tensor_of = {renames.get(t, t): t for t in in_tensors + out_tensors}
    in_tensors = [tensor_of[n] for n in input_order]
    out_tensors = [tensor_of[n] for n in output_order]
    graph_def = tf_to_onnx.optimize_tf_graph(graph_def, in_tensors, out_tensors, weights)
    return FrozenTFGraph(graph_def, weights, in_tensors, out_tensors, renames, tables)


# --- TF1 frozen GraphDef --------------------------------------------------------------------


_NOT_OUTPUTS = {"Const", "NoOp", "Placeholder", "PlaceholderWithDefault", "Assert", "VarHandleOp"}


class FrozenGraph:
    def __init__(self, path: Path, inputs: list[InputSpec] | None, outputs: list[str] | None):
        self.graph_def = tf.compat.v1.GraphDef()
        try:
            self.graph_def.ParseFromString(path.read_bytes())
        except Exception as exc:
            raise ModelFileError(f"{path} is not a readable frozen GraphDef: {first_line(exc)}") from None
        nodes = {n.name: n for n in self.graph_def.node}
        placeholders = [n for n in self.graph_def.node if n.op == "Placeholder"]
        if not inputs or not outputs:
            raise ConfigError(_frozen_graph_help(path, placeholders, _likely_outputs(self.graph_def)))
        self.inputs = []
        for spec in inputs:
            node = nodes.get(_node_name(spec.name))
            if node is None or node.op not in ("Placeholder", "PlaceholderWithDefault"):
                raise ConfigError(
                    f"input '{spec.name}' is not a placeholder in {path}. "
                    + _frozen_graph_help(path, placeholders, _likely_outputs(self.graph_def))
                )
            self.inputs.append(TensorInfo(spec.name, _placeholder_dtype(node), _placeholder_shape(node)))
        missing = [o for o in outputs if _node_name(o) not in nodes]
        if missing:
            raise ConfigError(
                f"outputs {missing} are not nodes of {path}; likely outputs: {_likely_outputs(self.graph_def)}"
            )
        self.outputs = list(outputs)
        self._graph = tf.Graph()
        with self._graph.as_default():
            tf.compat.v1.import_graph_def(self.graph_def, name="")
        self._session = tf.compat.v1.Session(graph=self._graph)

    def run(self, feeds):
        fetched = self._session.run(
            [_tensor_name(o) for o in self.outputs], {_tensor_name(k): v for k, v in feeds.items()}
        )
        return dict(zip(self.outputs, fetched, strict=True))

    def input_gradients(self, feeds, names, project):
        with self._graph.as_default():
            outputs = [self._graph.get_tensor_by_name(_tensor_name(o)) for o in self.outputs]
            directions = {
                o: tf.compat.v1.placeholder(tf.float64, name=f"tf2torch_projection_{i}")
                for i, o in enumerate(self.outputs)
            }
            total = tf.add_n(
                [
                    tf.reduce_sum(tf.cast(t, tf.float64) * directions[o])
                    for o, t in zip(self.outputs, outputs, strict=True)
                    if t.dtype.is_floating
                ]
            )
            wrt = [self._graph.get_tensor_by_name(_tensor_name(n)) for n in names]
            grads = tf.gradients(total, wrt)
        feed = {_tensor_name(k): v for k, v in feeds.items()}
        values = self._session.run(outputs, feed)
        for (name, placeholder), value in zip(directions.items(), values, strict=True):
            feed[placeholder] = project(name, value.shape)
        fetch = [g for g in grads if g is not None]
        fetched = iter(self._session.run(fetch, feed)) if fetch else iter(())
        return {
            n: np.zeros_like(feeds[n]) if g is None else next(fetched)
            for n, g in zip(names, grads, strict=True)
        }

    def to_onnx(self, opset, nchw_inputs=(), nchw_outputs=()):
        return graph_to_onnx(self.frozen_graph(), opset, _positions(self, nchw_inputs, nchw_outputs))

    def frozen_graph(self):
        from pipeline.tf_worker import tf_to_onnx

        in_names = [_tensor_name(i.name) for i in self.inputs]
        out_names = [_tensor_name(o) for o in self.outputs]
        renames = {
            t: n
            for t, n in zip(in_names + out_names, [i.name for i in self.inputs] + self.outputs, strict=True)
        }
        # The conversion consumes the GraphDef (it moves the weights); the session keeps its own copy.
        graph_def, self.graph_def = self.graph_def, None
        weights: dict[str, np.ndarray] = {}
        graph_def = tf_to_onnx.optimize_tf_graph(graph_def, in_names, out_names, weights)
        return FrozenTFGraph(graph_def, weights, in_names, out_names, renames)


def _node_name(name: str) -> str:
    return name.split(":")[0]


def _tensor_name(name: str) -> str:
    return name if ":" in name else f"{name}:0"


def _placeholder_dtype(node) -> str:
    return tf.as_dtype(node.attr["dtype"].type).name


def _placeholder_shape(node) -> tuple[int | None, ...] | None:
    shape = node.attr["shape"].shape
    if shape.unknown_rank:
        return None
    return tuple(None if d.size < 0 else d.size for d in shape.dim)


def _likely_outputs(graph_def) -> list[str]:
    consumed = {_node_name(i.lstrip("^")) for n in graph_def.node for i in n.input}
    return [f"{n.name}:0" for n in graph_def.node if n.name not in consumed and n.op not in _NOT_OUTPUTS]


def _frozen_graph_help(path: Path, placeholders, likely_outputs: list[str]) -> str:
    lines = [
        f"{path} is a frozen graph: it has no signature, so the config must name its inputs and outputs."
    ]
    lines.append("Placeholders in the graph (name, dtype, shape):")
    for node in placeholders:
        shape = _placeholder_shape(node)
        shown = (
            "unknown" if shape is None else "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"
        )
        lines.append(f"  - {node.name}:0  {_placeholder_dtype(node)}  {shown}")
    lines.append(f"Likely outputs: {', '.join(likely_outputs) or 'none found'}")
    lines.append("Add to the config, for example:")
    if placeholders:
        lines.append(f"  inputs:\n    - name: {placeholders[0].name}:0")
    lines.append(f"  outputs: [{likely_outputs[0] if likely_outputs else 'NAME:0'}]")
    return "\n".join(lines)


# --- TFLite ---------------------------------------------------------------------------------


def _check_tflite_structure(path: Path) -> None:
    """Read the whole flatbuffer in Python first: TFLite's C++ interpreter does not check a truncated
    or corrupt file and crashes the process (SIGSEGV) instead of raising."""
    import importlib

    schema = importlib.import_module("tensorflow.lite.python.schema_py_generated")
    try:
        schema.ModelT.InitFromPackedBuf(path.read_bytes(), 0)
    except Exception as exc:
        raise ModelFileError(
            f"{path} is not a complete .tflite model (its flatbuffer does not read: {first_line(exc)}); "
            "is it truncated or corrupt?"
        ) from None


def _tflite_signature_names(interpreter) -> dict[str, tuple[str, ...]]:
    """Tensor name -> the names its signatures give it (`serving_default_image:0` -> `image`)."""
    names: dict[str, tuple[str, ...]] = {}
    for key in interpreter.get_signature_list():
        runner = interpreter.get_signature_runner(key)
        for alias, detail in runner.get_input_details().items():
            if alias != detail["name"] and alias not in names.get(detail["name"], ()):
                names[detail["name"]] = (*names.get(detail["name"], ()), alias)
    return names


def _allocated(interpreter):
    # An op the interpreter has no kernel for (an app's custom op) fails here, not at construction.
    interpreter.allocate_tensors()
    return interpreter


class TFLiteModel:
    def __init__(self, path: Path, custom_op_files: Sequence[str] = ()):
        from pipeline.tf_worker import tflite_custom

        self.path = path
        self.densified = 0  # sparse weight tensors made dense for tf2onnx (tflite_dense.py)
        _check_tflite_structure(path)
        # The app's own custom ops in builtin form (tflite_custom.py), for tf2onnx; the reference runs
        # the file itself where TFLite has the app's kernels.
        self._content, self.custom_ops, self._unconvertible = tflite_custom.lowered(path, custom_op_files)
        self.reference_from_builtin_form = False
        try:
            self._interpreter = _allocated(tf.lite.Interpreter(model_path=str(path)))
        except Exception as exc:
            if self._unconvertible:
                raise ModelFileError(tflite_custom.unconvertible(path, self._unconvertible)) from None
            if self._content is None:
                raise ModelFileError(f"{path} is not a readable .tflite model: {first_line(exc)}") from None
            self._interpreter = _allocated(tf.lite.Interpreter(model_content=self._content))
            self.reference_from_builtin_form = True
        self._in = self._interpreter.get_input_details()
        self._out = self._interpreter.get_output_details()
        aliases = _tflite_signature_names(self._interpreter)
        self.inputs = [
            TensorInfo(
                d["name"],
                np.dtype(d["dtype"]).name,
                tuple(None if s < 0 else int(s) for s in d["shape_signature"]),
                aliases.get(d["name"], ()),
            )
            for d in self._in
        ]
        self.outputs = [d["name"] for d in self._out]

    def run(self, feeds):
        interp = self._interpreter
        for detail in self._in:
            interp.resize_tensor_input(detail["index"], feeds[detail["name"]].shape)
        interp.allocate_tensors()
        for detail in self._in:
            interp.set_tensor(detail["index"], feeds[detail["name"]])
        interp.invoke()
        return {d["name"]: interp.get_tensor(d["index"]).copy() for d in self._out}

    def to_onnx(self, opset, nchw_inputs=(), nchw_outputs=()):
        import tf2onnx

        if nchw_inputs or nchw_outputs:
            raise UsageError("`layout: nchw` is not supported for TFLite models yet: use layout nhwc")
        from pipeline.tf_worker import contrib_ops, tflite_custom, tflite_dense
        from pipeline.tf_worker.tf2onnx_handlers import wrapping

        if self._unconvertible:
            raise ConversionError(tflite_custom.unconvertible(self.path, self._unconvertible))
        wrapping.reset()
        with tempfile.TemporaryDirectory(prefix="tf2torch-tflite-") as tmp:
            path = self.path
            if self._content is not None:
                path = Path(tmp) / "custom_ops_lowered.tflite"
                path.write_bytes(self._content)
            path, self.densified = tflite_dense.densified(path, Path(tmp))
            model_proto, _ = tf2onnx.convert.from_tflite(str(path), opset=opset)
        contrib_ops.to_standard_ops(model_proto.graph, opset)
        return model_proto

    def frozen_graph(self):
        return None  # tf2onnx reads the flatbuffer directly; there is no TF graph to run


# --- dispatch -------------------------------------------------------------------------------


def load(fmt: str, cfg: ModelConfig, workdir: Path) -> TFModel:
    model = cfg.model
    custom = keras_trust.custom_objects(cfg.custom_objects) if fmt in ("keras", "h5") else None
    loaders: dict[str, Callable[[], TFModel]] = {
        "keras": lambda: load_keras(Path(model), cfg.trust_model, custom),
        "h5": lambda: load_h5(Path(model), cfg.trust_model, custom),
        "saved_model": lambda: SavedModel(Path(model), cfg.signature),
        "frozen_graph": lambda: FrozenGraph(Path(model), cfg.inputs, cfg.outputs),
        "tflite": lambda: TFLiteModel(Path(model), cfg.tflite_custom_ops),
        "zoo": lambda: _load_zoo(model, cfg.inputs, cfg.seed, workdir, cfg.zoo_weights == "redrawn"),
    }
    return loaders[fmt]()


def _load_zoo(
    model_id: str, inputs: list[InputSpec] | None, seed: int, workdir: Path, redraw: bool = True
) -> TFModel:
    from pipeline.tf_worker import kecam
    from pipeline.tf_worker.builtin_models import build

    # For zoo models the configured input shape (without the batch dimension) chooses the build shape.
    shape = tuple(inputs[0].shape[1:]) if inputs and inputs[0].shape else None
    if kecam.is_kecam_id(model_id):  # a library's model, loaded from the file it was saved to
        path = kecam.build(model_id, shape, seed, workdir, redraw)
        return load_h5(path) if path.suffix == ".h5" else SavedModel(path, "serving_default")
    built = build(model_id, shape, seed, redraw)
    if isinstance(built, bytes):  # a quantized family: the bytes of a .tflite file, kept as an artifact
        path = workdir / "source.tflite"
        path.write_bytes(built)
        return TFLiteModel(path)
    return KerasModel(built, reload=lambda: build(model_id, shape, seed, redraw))
