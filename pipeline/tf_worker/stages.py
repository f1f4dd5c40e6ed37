"""Stages 1 and 2, run in the TensorFlow worker: load + reference outputs, then tf2onnx export."""

from __future__ import annotations

import logging
import re
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from pipeline import artifacts
from pipeline.common import inputs, onnx_files
from pipeline.config import ModelConfig
from pipeline.errors import ConfigError, ConversionError, UnsupportedOpsError, UsageError, first_line
from pipeline.tf_worker import compat, layout, marked_export, tf2onnx_handlers, tf_models
from pipeline.tf_worker.tf2onnx_handlers import wrapping

log = logging.getLogger("tf2torch.export")

compat.patch_numpy_for_tf2onnx()
compat.patch_tf2onnx_node_update_proto()
tf2onnx_handlers.register()


def load(cfg: ModelConfig, fmt: str, out: Path, state: dict[str, Any]) -> dict[str, Any]:
    model = tf_models.load(fmt, cfg, out)
    specs = inputs.resolve_specs(model.inputs, cfg.inputs, cfg.batch_size)
    feeds = inputs.generate(specs, cfg.seed, cfg.samples)
    try:
        outputs = inputs.run_samples(model.run, feeds, model.outputs)
    except Exception as exc:
        raise _tf_could_not_run(exc) from None
    if not cfg.allow_nonfinite:
        _refuse_nonfinite(outputs)
    images = (layout.image_names(feeds), layout.image_names(outputs)) if cfg.layout == "nchw" else ([], [])
    if cfg.layout == "nchw" and not images[0]:
        raise ConfigError("`layout: nchw` needs an image input (4-D, NHWC in TF); this model has none")
    artifacts.save_arrays(out / artifacts.INPUTS, layout.to_artifacts(feeds, cfg.layout))
    artifacts.save_arrays(out / artifacts.OUTPUTS["tf"], layout.to_artifacts(outputs, cfg.layout))
    state.update(model=model, nchw=images, output_ranks={n: a.ndim - 1 for n, a in outputs.items()})
    second_shape = _second_shape(model, specs, feeds, cfg.layout, out)
    # Only the native passes read the variables; a Keras model's copy can be gigabytes.
    weights = None
    if cfg.native and hasattr(model, "write_weights"):
        state["weight_sample"] = [feeds[i.name][0] for i in model.inputs]
        weights = model.write_weights(out, state["weight_sample"])
    return {
        **_reference_warnings(model),
        "layout": {"layout": cfg.layout, "nchw_inputs": images[0], "nchw_outputs": images[1]},
        "keras_weights": weights,
        "inputs": [s.describe(cfg.samples) for s in specs],
        "second_shape": second_shape,
        "outputs": [
            {"name": n, "shape": list(a.shape[1:]), "dtype": a.dtype.name} for n, a in outputs.items()
        ],
    }


# TF's own CPU kernels (oneDNN) refuse some shapes its reference kernels take; TF says only which.
_ONEDNN_LIMITS = ("Input dims must be <= 5",)


def _tf_could_not_run(exc: Exception) -> Exception:
    """TensorFlow failing to run the model on the seeded inputs, in one line: the node and TF's own
    reason (a graph error's first line is only "Graph execution error:")."""
    import tensorflow as tf

    if not isinstance(exc, tf.errors.OpError):
        return exc
    # eager errors come with terminal colours and the kernel's function name before the reason
    text = re.sub(r"\x1b\[[0-9;]*m|\{\{function_node [^}]*\}\}\s*", "", str(exc.message))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    reason = next(
        (line for line in lines[1:] if not line.startswith(("Detected at", "<stack", "[["))), lines[0]
    )
    node = getattr(exc, "node_def", None)
    where = f" at node {node.name}" if node is not None and node.name else ""
    hint = ""
    if reason.startswith(_ONEDNN_LIMITS):
        hint = (
            "; TensorFlow's oneDNN CPU kernels refuse this shape and its own kernels take it: set "
            "`tf_onednn: false` in the config"
        )
    return ConversionError(f"TensorFlow could not run the model on the seeded inputs{where}: {reason}{hint}")


def _reference_warnings(model) -> dict[str, Any]:
    if not getattr(model, "reference_from_builtin_form", False):
        return {}
    codes = ", ".join(sorted(model.custom_ops))
    return {
        "warnings": [
            f"load: TFLite here has no kernel for the app's custom op(s) {codes}: the reference outputs "
            "come from their builtin form (tflite_custom_ops), which is what gets converted, so the "
            "comparisons cannot check that form itself"
        ]
    }


def _second_shape(model, specs, feeds, layout_name: str, out: Path) -> dict[str, Any] | None:
    """TF's outputs on the first sample at a second value of every unknown dimension, so that later
    stages can show those dimensions stayed dynamic. A dimension the model turns out to need at its
    configured size (TF fails at any other) is reported as fixed."""
    written = [out / artifacts.INPUTS_SECOND_SHAPE, out / artifacts.SECOND_SHAPE_OUTPUTS["tf_second_shape"]]
    for path in written:
        path.unlink(missing_ok=True)
    first = {name: array[0] for name, array in feeds.items()}
    failures = []
    for shapes in inputs.second_shape_candidates(model.inputs, specs):
        sample = inputs.resized(first, shapes)
        try:
            result = model.run(sample)
        except Exception as exc:  # the model needs some dimension at its configured size
            failures.append(f"{_shapes_text(shapes)}: {type(exc).__name__}")
            continue
        outputs = {name: np.asarray(result[name])[None] for name in model.outputs}
        artifacts.save_arrays(
            written[0], layout.to_artifacts({n: a[None] for n, a in sample.items()}, layout_name)
        )
        artifacts.save_arrays(written[1], layout.to_artifacts(outputs, layout_name))
        fixed = [
            f"{spec.name}[{axis}]"
            for info, spec in zip(model.inputs, specs, strict=True)
            for axis, size in enumerate(spec.shape)
            if info.shape is not None
            and axis < len(info.shape)
            and info.shape[axis] is None
            and shapes[spec.name][axis] == size
        ]
        return {
            "inputs": {n: list(s) for n, s in shapes.items()},
            "fixed_by_model": fixed,
            "refused": failures,
        }
    return None if not failures else {"inputs": None, "refused": failures}


def _shapes_text(shapes: dict[str, tuple[int, ...]]) -> str:
    return ", ".join(f"{name} {list(shape)}" for name, shape in shapes.items())


def _refuse_nonfinite(outputs: dict[str, np.ndarray]) -> None:
    """NaN or Inf in TF's own outputs makes every later comparison meaningless: NaN matches NaN."""
    found = []
    for name, array in outputs.items():
        if array.dtype.kind not in "fc":
            continue
        nan, inf = int(np.isnan(array).sum()), int(np.isinf(array).sum())
        if nan or inf:
            found.append(f"{name}: {nan} NaN, {inf} Inf of {array.size} values")
    if found:
        raise UsageError(
            "TF's outputs on the seeded inputs are not finite (" + "; ".join(found) + "), so no comparison "
            "could show the conversion is right; check the model's weights, give inputs in the range it "
            "expects (config: inputs[].range), or set allow_nonfinite: true to compare NaN/Inf positions"
        )


def export(cfg: ModelConfig, fmt: str, out: Path, state: dict[str, Any]) -> dict[str, Any]:
    model = state["model"]
    nchw_inputs, nchw_outputs = state["nchw"]
    shutil.rmtree(out / artifacts.MARKED_DIR, ignore_errors=True)  # never a stale one from a rerun
    # train.py trains model.py's parameters: each must be tied to its Keras variable whatever its
    # value, which the marked export makes possible (config marked_export; first, because the real
    # export frees the model).
    marked = None
    if cfg.wants_marked_export and "weight_sample" in state:
        marked = _marked_export(cfg, model, out, state)
    proto = model.to_onnx(cfg.opset, nchw_inputs, nchw_outputs)
    # nodes a project handler failed on, which tf2onnx's own handler converted (validate checks them)
    fallbacks = list(wrapping.FALLBACKS)
    _finish(proto, model, state, cfg.opset)
    saved = onnx_files.save(proto, out / artifacts.ONNX_MODEL, cfg.external_data_threshold_mb)
    return {
        **saved,
        **({"upstream_fallbacks": fallbacks, "warnings": _fallback_warnings(fallbacks)} if fallbacks else {}),
        **({"sparse_weights_densified": model.densified} if getattr(model, "densified", 0) else {}),
        **({"custom_ops_in_builtin_form": model.custom_ops} if getattr(model, "custom_ops", None) else {}),
        "opset": cfg.opset,
        "nodes": len(proto.graph.node),
        "op_types": dict(Counter(n.op_type for n in proto.graph.node)),
        **({"marked_export": marked} if marked else {}),
    }


def _fallback_warnings(fallbacks: list[dict[str, str]]) -> list[str]:
    return [
        f"export: the project's {f['op']} handler failed on node '{f['node']}' ({f['reason']}); "
        "tf2onnx's own handler converted it, which the validate stage checks"
        for f in fallbacks
    ]


def _finish(proto: onnx.ModelProto, model, state: dict[str, Any], opset: int) -> None:
    leftover = unknown_onnx_ops(proto.graph, opset)
    if leftover:
        raise UnsupportedOpsError("export", "tf2onnx", leftover)
    order_graph_io(proto, [i.name for i in model.inputs], model.outputs)
    fill_output_ranks(proto, state.get("output_ranks", {}))


def _marked_export(cfg: ModelConfig, model, out: Path, state: dict[str, Any]) -> dict[str, Any] | None:
    """marked_export.py's export into MARKED_DIR; a failure leaves the native passes their ties by
    value and is reported (the training check then names any variable left without a parameter)."""
    target = out / artifacts.MARKED_DIR
    started = time.perf_counter()
    try:
        with marked_export.marked(model.model, cfg.seed) as count:
            if not count:
                return None
            target.mkdir(parents=True)
            model.write_weights(target, state["weight_sample"])
            proto = model.to_onnx(cfg.opset, *state["nchw"], every_variable=True, drop_model=False)
        _finish(proto, model, state, cfg.opset)
        onnx_files.save(proto, target / "model.onnx", cfg.external_data_threshold_mb)
    except Exception as exc:  # noqa: BLE001 - any failure of this second export is reported, not fatal
        shutil.rmtree(target, ignore_errors=True)
        reason = f"{type(exc).__name__}: {first_line(exc)}"
        log.warning("the marked export failed (%s); parameters are tied by value", reason)
        return {"status": "failed", "reason": reason}
    return {
        "status": "written",
        "variables_marked": count,
        "nodes": len(proto.graph.node),
        "seconds": round(time.perf_counter() - started, 2),
    }


def unknown_onnx_ops(graph: onnx.GraphProto, opset: int) -> Counter:
    """TF ops tf2onnx could not map stay in the graph under their TF names; count them, subgraphs
    included. A TF op named like an ONNX op that only exists at a later opset (BitwiseAnd, from 18)
    counts too, with the opset that has it."""
    found: Counter = Counter()
    for node in graph.node:
        domain = node.domain or ""
        if domain in ("", "ai.onnx"):
            if not _onnx_op_at(node.op_type, opset):
                since = _onnx_op_since(node.op_type)
                hint = f" (an ONNX op from opset {since}: set `opset: {since}`)" if since else ""
                found[node.op_type + hint] += 1
        elif not onnx.defs.has(node.op_type, domain):
            found[f"{domain}.{node.op_type}"] += 1
        for attr in node.attribute:
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                found += unknown_onnx_ops(sub, opset)
    return found


def _onnx_op_at(op_type: str, opset: int) -> bool:
    try:
        onnx.defs.get_schema(op_type, opset, "")
    except onnx.defs.SchemaError:
        return False
    return True


def _onnx_op_since(op_type: str) -> int | None:
    history = onnx.defs.get_all_schemas_with_history()
    versions = [s.since_version for s in history if s.name == op_type and s.domain == ""]
    return min(versions) if versions else None


def fill_output_ranks(proto: onnx.ModelProto, ranks: dict[str, int]) -> None:
    """A graph output tf2onnx left without a shape (an If's result) fails onnx.checker; TF's own
    output says its rank, so it gets that many dimensions of unknown size."""
    for output in proto.graph.output:
        tensor = output.type.tensor_type
        if output.name in ranks and not tensor.HasField("shape"):
            tensor.shape.SetInParent()
            for _ in range(ranks[output.name]):
                tensor.shape.dim.add()


def order_graph_io(proto: onnx.ModelProto, input_names: list[str], output_names: list[str]) -> None:
    """Make the ONNX graph's inputs and outputs follow the TF model's order, or fail if they differ."""
    graph = proto.graph
    initializers = {t.name for t in graph.initializer}
    for field, wanted in (("input", input_names), ("output", output_names)):
        # Older IRs list initializers among the inputs; an output may be an initializer itself (a
        # graph whose output is a constant: tf.range of constants, a constant table lookup).
        values = [v for v in getattr(graph, field) if field == "output" or v.name not in initializers]
        have = [v.name for v in values]
        if sorted(have) != sorted(wanted):
            raise ConversionError(
                f"the exported ONNX graph has {field}s {have}, but the TF model has {wanted}; "
                "captured constants may have become graph inputs"
            )
        by_name = {v.name: v for v in values}
        ordered = [by_name[n] for n in wanted]
        del getattr(graph, field)[:]
        getattr(graph, field).extend(ordered)
