"""Stages 3 and 4, run in the torch worker: ONNX validation + onnxruntime, then onnx2torch import."""

from __future__ import annotations

import tempfile
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import onnx

from pipeline import artifacts
from pipeline.common import onnx_files, tf_origins
from pipeline.common.inputs import run_samples
from pipeline.config import ModelConfig
from pipeline.errors import ConversionError, UnsupportedOpsError, first_line
from pipeline.torch_worker import exercised
from pipeline.torch_worker.outputs import save_module_outputs

# The reference run computes the graph's own arithmetic. Otherwise onnxruntime fuses
# DynamicQuantizeLinear/DequantizeLinear/MatMul into an integer kernel that, on CPUs with AVX2 but no
# VNNI, multiplies u8 by s8 with 16-bit saturation (onnxruntime's quantization docs) and moves a
# dynamic-range quantized model's outputs by 6e-2 where TF and torch agree to 3e-3.
SESSION_CONFIG = {"session.disable_quant_qdq": "1"}


def onnxruntime_session(model: str | bytes):
    """An onnxruntime CPU session for a model path (external data allowed) or serialized model."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    for key, value in SESSION_CONFIG.items():
        options.add_session_config_entry(key, value)
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def validate(cfg: ModelConfig, fmt: str, out: Path, state: dict[str, Any]) -> dict[str, Any]:
    import onnxruntime as ort

    path = out / artifacts.ONNX_MODEL
    try:
        # The path form also works for models with external data (over 2 GB).
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        # full_check runs shape inference too, which raises its own error type
        what = (
            "ONNX shape inference failed on"
            if isinstance(exc, onnx.shape_inference.InferenceError)
            else ("onnx.checker rejected")
        )
        structure = onnx.load(str(path), load_external_data=False)
        raise ConversionError(
            f"{what} {path.name}: {first_line(exc)}{tf_origins.explain(structure, str(exc))}"
        ) from None
    # Over the threshold the tensors stay on disk: ORT, the checker and inference read the path.
    model = onnx.load(str(path), load_external_data=not onnx_files.has_external_data(path))
    try:
        _strict_shape_inference(model, path)
    except Exception as exc:
        raise ConversionError(
            f"ONNX shape inference failed on {path.name}: {first_line(exc)}{tf_origins.explain(model, str(exc))}"
        ) from None
    state["onnx"] = model

    try:
        session = onnxruntime_session(str(path))
    except Exception as exc:  # onnxruntime refuses a graph the checks let through
        raise ConversionError(
            f"onnxruntime cannot load {path.name}: {first_line(exc)}{tf_origins.explain(model, str(exc))}"
        ) from None
    names = [o.name for o in session.get_outputs()]
    feeds = artifacts.load_arrays(out / artifacts.INPUTS)

    def run(feed):
        return dict(zip(names, session.run(names, feed), strict=True))

    artifacts.save_arrays(out / artifacts.OUTPUTS["onnx"], run_samples(run, feeds, names))
    details = {
        "onnxruntime": ort.__version__,
        "checker": "full_check passed",
        "shape_inference": "strict passed",
        "session_options": SESSION_CONFIG,
    }
    found = _exercised(model, path, out, feeds)
    if found is not None:
        details["exercised"] = found
        details["warnings"] = found["warnings"]
    return details


def _exercised(model: onnx.ModelProto, path: Path, out: Path, feeds: dict) -> dict | None:
    """The If branches, Loop trip counts and masks the sample batches and the second input shape
    exercised (pipeline/torch_worker/exercised.py)."""
    runs = [{name: value[i] for name, value in feeds.items()} for i in range(len(next(iter(feeds.values()))))]
    second = out / artifacts.INPUTS_SECOND_SHAPE
    if second.is_file():
        runs += [{name: value[0] for name, value in artifacts.load_arrays(second).items()}]
    if onnx_files.has_external_data(path):
        return {
            "runs": len(runs),
            "nodes": [],
            "warnings": [],
            "not_recorded": ["the model keeps its weights in external data; branches are not recorded"],
        }
    return exercised.record(model, runs, onnxruntime_session)


def _strict_shape_inference(model: onnx.ModelProto, path: Path) -> None:
    if not onnx_files.has_external_data(path):
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
        return
    # Over 2 GB the in-memory model cannot be serialised for inference: infer from the file.
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".infer-") as tmp:
        onnx.shape_inference.infer_shapes_path(
            str(path), str(Path(tmp) / path.name), check_type=True, strict_mode=True
        )


def unsupported_by_onnx2torch(model: onnx.ModelProto) -> Counter:
    """ONNX ops without a converter, counted over the graph and its subgraphs (Loop bodies)."""
    from onnx2torch.node_converters.registry import get_converter

    from pipeline.torch_worker.converters import register

    register()
    opset = {o.domain or "": o.version for o in model.opset_import}
    missing: Counter = Counter()
    for node in _all_nodes(model.graph):
        domain = "" if node.domain in ("", "ai.onnx") else node.domain
        try:
            get_converter(node.op_type, opset.get(domain, 1), domain)
        except NotImplementedError:
            missing[f"{node.op_type} (opset {opset.get(domain, 1)})"] += 1
    return missing


def _all_nodes(graph: onnx.GraphProto):
    for node in graph.node:
        yield node
        for attr in node.attribute:
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                yield from _all_nodes(sub)


def to_torch(
    model: onnx.ModelProto,
    converters: Sequence[str] = (),
    attach_onnx_mapping: bool = False,
    data_dir: Path | None = None,
):
    """The onnx2torch module in eval mode, with the project's converters and the config's
    (`converters`: the files it names). `data_dir`: the model was loaded without its external data,
    which lies there."""
    from pipeline.torch_worker.converters import context
    from pipeline.torch_worker.converters.plugins import user_converters

    with user_converters(converters):
        missing = unsupported_by_onnx2torch(model)
        if missing:
            raise UnsupportedOpsError("import", "onnx2torch", missing)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                return context.convert(model, attach_onnx_mapping, data_dir).eval()
            except Exception:
                # a converter declined or crashed on a node: name every such node, not only the first
                declined = Counter(context.unconvertible_nodes(model))
                if not declined:
                    raise
                raise UnsupportedOpsError("import", "onnx2torch", declined) from None


def import_torch(cfg: ModelConfig, fmt: str, out: Path, state: dict[str, Any]) -> dict[str, Any]:
    import torch

    path = out / artifacts.ONNX_MODEL
    external = onnx_files.has_external_data(path)
    model = state.get("onnx") or onnx.load(str(path), load_external_data=not external)
    module = to_torch(model, cfg.converters, data_dir=out if external else None)
    input_names = [i.name for i in model.graph.input]
    output_names = [o.name for o in model.graph.output]
    save_module_outputs(module, "torch", out, input_names, output_names)
    artifacts.write_atomic(out / artifacts.TORCH_MODEL, lambda tmp: torch.save(module, str(tmp)))
    state.update(torch_module=module, input_names=input_names, output_names=output_names)
    params = sum(p.numel() for p in module.parameters())
    buffers = sum(b.numel() for b in module.buffers())
    # Most project converters emit plain torch code; the Loop converter's module is a class of this package.
    own_classes = sorted(
        {type(m).__name__ for m in module.modules() if type(m).__module__.startswith("pipeline.")}
    )
    return {
        "torch": torch.__version__,
        "parameters": params,
        "buffers": buffers,
        "model_pt_needs_tf2torch": own_classes,
    }
