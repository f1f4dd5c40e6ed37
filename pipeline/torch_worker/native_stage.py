"""Stage `native` (torch worker): the graph passes, then model.py + model.safetensors + weights_map.json,
and the outputs of model.py itself, loaded fresh from the files it wrote."""

from __future__ import annotations

import importlib.util
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline import __version__, artifacts
from pipeline.config import ModelConfig, resolve_tolerance
from pipeline.errors import ConversionError, first_line
from pipeline.torch_worker import marked_ties
from pipeline.torch_worker.native import activity, codegen, control_flow, driver, layers
from pipeline.torch_worker.native.context import (
    KerasActivity,
    KerasDropout,
    PassContext,
    TFVariable,
)
from pipeline.torch_worker.outputs import save_module_outputs, second_input_set


def native(cfg: ModelConfig, fmt: str, out: Path, state: dict[str, Any]) -> dict[str, Any]:
    input_names, output_names = state["input_names"], state["output_names"]
    feeds = artifacts.load_arrays(out / artifacts.INPUTS)
    reference = artifacts.load_arrays(out / artifacts.OUTPUTS["onnx"])
    count = len(feeds[input_names[0]])
    samples = [
        [torch.from_numpy(np.asarray(feeds[n][i], order="C")) for n in input_names] for i in range(count)
    ]
    references = [{k: v[i] for k, v in reference.items()} for i in range(count)]
    start = driver.verify_start(state["torch_module"], samples, references, output_names, cfg)
    if not start["passed"]:
        # The passes are kept only while the module matches onnxruntime; one that does not from the
        # start (the import stage is out of tolerance) leaves nothing to verify them against.
        return {
            "skipped": f"the import stage's module is {start['max_abs_diff']:.3g} from onnxruntime, outside the "
            "onnx_vs_torch tolerance, so the native passes cannot be verified (see the import stage)"
        }
    tf_variables, tf_summary = _tf_variables(out)
    second = [torch.from_numpy(a) for a in second_input_set(out, input_names)[0]]

    def make_ctx(folder: Path) -> PassContext:
        variables, summary = _tf_variables(folder)
        return PassContext(
            samples[0],
            second,
            variables,
            other_samples=samples[1:],
            dropouts=_keras_dropouts(folder, summary),
            activities=_keras_activities(folder, summary),
        )

    details: dict[str, Any] = {}
    marked = _on_marked_export(out, cfg, samples, output_names, make_ctx, tf_variables, references, details)
    if marked is not None:
        module, passes, ctx = marked.module, marked.passes, marked.ctx
    else:
        ctx = make_ctx(out)
        module, passes = driver.run_passes(state["torch_module"], ctx, samples, references, output_names, cfg)
    module.eval()

    leftover = sorted(
        {
            type(m).__name__
            for m in module.children()
            if type(m) not in codegen.NATIVE_CLASSES and not control_flow.is_control_flow(m)
        }
    )
    details.update(passes=passes, left_as_onnx2torch=leftover)
    restored = [m.__dict__.get(layers.LAYER) for m in module.modules() if isinstance(m, torch.nn.Dropout)]
    if ctx.dropouts:
        details["dropouts_restored"] = restored
    state["restored_dropouts"] = restored
    state["activity_modules"] = activity.activity_modules(module)
    state["ties"] = details.get("ties")
    if ctx.activities:
        details["activity_outputs"] = state["activity_modules"]
    details.update(_parameter_counts(module, tf_summary))
    weights_map = _weights_map(module, ctx)
    artifacts.save_json(out / artifacts.WEIGHTS_MAP, weights_map)
    details["weights_mapped"] = len(weights_map)
    untied = sorted({v.path for v in tf_variables or [] if v.trainable} - {row["tf"] for row in weights_map})
    if untied:
        shown = ", ".join(untied[:3]) + (f" and {len(untied) - 3} more" if len(untied) > 3 else "")
        details["warnings"] = [
            f"model.py has no parameter for {len(untied)} trainable Keras variable(s) ({shown}): a training "
            "loop on it would leave them as they are; "
            + (
                "the marked export, which ties every variable by identity, could not be used (native.details.ties)"
                if str(details.get("ties", "")).startswith("by value: the marked export")
                else "`marked_export: always` ties every variable by identity"
            )
        ]

    for stale in (artifacts.NATIVE_CODE, artifacts.NATIVE_WEIGHTS):
        (out / stale).unlink(missing_ok=True)
    try:
        source = codegen.generate(module, cfg.class_name, input_names, _header(cfg, fmt))
    except codegen.CodegenError:
        problems = codegen.missing_forms(module, ctx.reasons)
        details.update(model_py="not written", missing=problems)
        raise ConversionError(
            f"model.py not written: {len(problems)} node(s) have no plain-torch form: "
            + "; ".join(problems[:3])
            + (
                f"; and {len(problems) - 3} more (report.json: native.details.missing)"
                if len(problems) > 3
                else ""
            ),
            details=details,
        ) from None
    artifacts.save_text(out / artifacts.NATIVE_CODE, source)
    artifacts.write_atomic(out / artifacts.NATIVE_WEIGHTS, lambda tmp: _save_weights(module, tmp))
    try:
        runnable = load_native(out, cfg.class_name)
    except Exception as exc:  # a code generation bug: remove the files, say which error
        for written in (artifacts.NATIVE_CODE, artifacts.NATIVE_WEIGHTS):
            (out / written).unlink(missing_ok=True)
        details["model_py"] = "not written"
        raise ConversionError(
            f"model.py not written: the generated code failed to load ({type(exc).__name__}: {first_line(exc)})",
            details=details,
        ) from exc
    details["model_py"] = f"{artifacts.NATIVE_CODE} + {artifacts.NATIVE_WEIGHTS}"
    details["model_py_lines"] = source.count("\n")
    state["native_module"] = runnable
    save_module_outputs(runnable, "native", out, input_names, output_names)
    details["tolerance"] = resolve_tolerance(cfg.tolerances, "onnx_vs_torch", output_names[0]).model_dump()
    return details


def _on_marked_export(out, cfg, samples, output_names, make_ctx, tf_variables, references, details):
    """The passes on the marked export when the export stage wrote one (marked_ties.py); None (the
    passes run on the real export, ties by value) without one or when it fails, which `details` says."""
    folder = marked_ties.marked_dir(out)
    if tf_variables is None:
        return None
    if folder is None:
        details["ties"] = "by value: no marked export (config marked_export; the export stage says why)"
        return None
    try:
        marked = marked_ties.run(folder, cfg, samples, output_names, make_ctx, tf_variables, references)
    except Exception as exc:  # noqa: BLE001 - onnx2torch, onnxruntime or a tie: any failure falls back
        reason = str(exc) if isinstance(exc, marked_ties.MarkedTiesFailed) else f"{type(exc).__name__}: {exc}"
        details["ties"] = f"by value: the marked export could not be used ({first_line(reason)})"
        return None
    details["ties"] = f"by identity: {marked.tied} tensors tied on the marked export, real values loaded"
    return marked


def load_native(out: Path, class_name: str) -> torch.nn.Module:
    """model.py's class built and loaded strictly from model.safetensors, as a user would."""
    from safetensors.torch import load_file

    spec = importlib.util.spec_from_file_location(
        f"tf2torch_native_{abs(hash(str(out)))}", out / artifacts.NATIVE_CODE
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = getattr(module, class_name)()
    model.load_state_dict(load_file(str(out / artifacts.NATIVE_WEIGHTS)), strict=True)
    return model.eval()


def _save_weights(module: torch.nn.Module, path: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous().clone() for k, v in module.state_dict().items()}, str(path))


def _tf_variables(out: Path) -> tuple[list[TFVariable] | None, dict[str, Any] | None]:
    layers_path = out / artifacts.TF_LAYERS
    if not layers_path.is_file():
        return None, None
    summary = json.loads(layers_path.read_text())
    arrays = artifacts.load_arrays(out / artifacts.TF_WEIGHTS)
    variables = [
        TFVariable(
            layer["name"],
            layer["class"],
            w["name"],
            w["path"],
            arrays[w["key"]],
            w["trainable"],
            layer["config"],
        )
        for layer in summary["layers"]
        for w in layer["weights"]
    ]
    return variables, summary


def _keras_dropouts(out: Path, tf_summary: dict[str, Any] | None) -> list[KerasDropout]:
    rows = (tf_summary or {}).get("dropouts") or []
    path = out / artifacts.DROPOUT_INPUTS
    values = artifacts.load_arrays(path) if rows and path.is_file() else {}
    return [
        KerasDropout(row["name"], row["rate"], values.get(row["name"]) if row["restorable"] else None)
        for row in rows
    ]


def _keras_activities(out: Path, tf_summary: dict[str, Any] | None) -> list[KerasActivity]:
    rows = (tf_summary or {}).get("activity_outputs") or []
    path = out / artifacts.ACTIVITY_OUTPUTS
    values = artifacts.load_arrays(path) if any(r["placeable"] for r in rows) and path.is_file() else {}
    return [KerasActivity(row["name"], values.get(row["name"])) for row in rows]


def _parameter_counts(module: torch.nn.Module, tf_summary: dict[str, Any] | None) -> dict[str, Any]:
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    counts = {
        "trainable_elements": trainable,
        "frozen_parameter_elements": sum(p.numel() for p in module.parameters() if not p.requires_grad),
        "buffer_elements": sum(b.numel() for b in module.buffers()),
    }
    if tf_summary is not None:
        counts["tf_trainable_elements"] = tf_summary["trainable_elements"]
        counts["trainable_matches_tf"] = trainable == tf_summary["trainable_elements"]
    return counts


def _weights_map(module: torch.nn.Module, ctx: PassContext) -> list[dict[str, Any]]:
    """TF variable -> PyTorch parameter or buffer, with the transform between them."""
    rows = []
    state = module.state_dict()
    for name, child in module.named_modules():
        for param_name, (path, transform) in child.__dict__.get(layers.SOURCE, {}).items():
            key = f"{name}.{param_name}" if name else param_name
            rows.append({"tf": path, "torch": key, "shape": list(state[key].shape), "transform": transform})
    for key, (path, transform) in ctx.sources.items():
        if key in state:
            rows.append({"tf": path, "torch": key, "shape": list(state[key].shape), "transform": transform})
    return rows


def _header(cfg: ModelConfig, fmt: str) -> list[str]:
    tol = cfg.tolerances
    onnx_tol = resolve_tolerance(tol, "onnx_vs_torch", "")
    tf_tol = resolve_tolerance(tol, "tf_vs_torch", "")
    return [
        f"Generated by tf2torch {__version__} on {datetime.now(UTC):%Y-%m-%d} from {cfg.model} ({fmt}).",
        "Weights: model.safetensors (load_state_dict(..., strict=True)); TF variable names: weights_map.json.",
        f"Compared on seeded inputs with onnxruntime (atol={onnx_tol.atol:g}, rtol={onnx_tol.rtol:g}) and",
        f"TensorFlow (atol={tf_tol.atol:g}, rtol={tf_tol.rtol:g}) by the `native` stage: report.json has the result.",
        f"torch {torch.__version__}, python {sys.version.split()[0]}.",
    ] + (
        ["Image inputs and outputs are NCHW (layout: nchw); TensorFlow's model takes NHWC."]
        if cfg.layout == "nchw"
        else []
    )
