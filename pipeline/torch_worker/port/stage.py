"""Stage `port` of `tf2torch verify` (torch worker): build the user's module, transfer the Keras
weights into it, run it on the seeded inputs and write its outputs for the tf_vs_port comparison.

Writes port_mapping.json (the mapping table, findings, anything unmatched) before anything can fail,
so the report and the command line can always show it. A port whose weights do not all find a home
stops here with exit 2: nothing is guessed, and no weights file is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pipeline import artifacts
from pipeline.config import ModelConfig, resolve_tolerance
from pipeline.errors import UsageError
from pipeline.torch_worker.port import checks, layers_trace, match, rules, user_module


class PortMismatch(UsageError):
    """The port's modules do not take the Keras weights (exit 2); port_mapping.json says which."""


def port(cfg: ModelConfig, fmt: str, out: Path, state: dict[str, Any]) -> dict[str, Any]:
    import torch

    torch.manual_seed(cfg.seed)
    module = user_module.build(cfg.torch_module, cfg.init_args)
    feeds = artifacts.load_arrays(out / artifacts.INPUTS)
    layers = artifacts.load_json(out / artifacts.TF_LAYERS)["layers"]
    tf_weights = artifacts.load_arrays(out / artifacts.TF_WEIGHTS)
    channels_first = cfg.input_layout == "nchw"
    first = {name: batch[0] for name, batch in feeds.items()}
    batch = next(iter(first.values())).shape[0]

    trace, failure = _record(module, first, channels_first)
    modules = dict(module.named_modules())
    sites = _sites(module, trace)
    slots = [slot for layer in layers for slot in rules.slots_of(layer)]
    pairing = match.pair(slots, sites, cfg.weight_mapping)

    rows: list[dict[str, Any]] = []
    findings: list[checks.Finding] = []
    mismatches: list[str] = []
    assignments: list[tuple[str, rules.Assignment]] = []
    for pair_slots, site in pairing.pairs:
        findings += checks.check_pair(pair_slots, site, modules[site.name], trace)
    rnn_sites = [s for s in sites if s.kind == "rnn"]
    findings += checks.batch_axis_findings(pairing.pairs, trace, batch, rnn_sites, modules)
    for pair_slots, site in pairing.pairs:
        try:
            moved = rules.transfer(pair_slots, modules[site.name], tf_weights, channels_first)
        except rules.Mismatch as exc:
            mismatches.append(checks.explain_mismatch(pair_slots[0], site, exc.message, findings))
            continue
        for item in moved.assignments:
            assignments.append((site.name, item))
            rows.append(_row(pair_slots, site, item))
    unmatched = [_unmatched_tf(s) for s in pairing.tf_left] + [
        _unmatched_torch(s) for s in pairing.torch_left
    ]
    mapping = {
        "torch_module": cfg.torch_module,
        "rows": rows,
        "findings": findings,
        "mismatches": mismatches,
        "unmatched": unmatched,
        "forward_error": failure,
    }
    artifacts.save_json(out / artifacts.PORT_MAPPING, mapping)
    if mismatches or unmatched:
        raise PortMismatch(
            f"the Keras weights do not fit {cfg.torch_module.rpartition(':')[2]}: "
            f"{len(mismatches)} shape mismatch(es), {len(unmatched)} unmatched; nothing was transferred "
            f"(the problems are listed below and in report.md; `weight_mapping` in the config pins pairs "
            f"that the order gets wrong)"
        )
    _assign(modules, assignments)
    names = list(artifacts.load_arrays(out / artifacts.OUTPUTS["tf"]))
    outputs = _run_samples(module, feeds, names, channels_first)
    artifacts.save_arrays(out / artifacts.OUTPUTS["port"], outputs)
    tf_values = artifacts.load_arrays(out / artifacts.PORT_TF_VALUES)
    if tf_values:
        watched = [site.name for _, site in pairing.pairs]
        captured = layers_trace.capture(module, watched, _to_torch(first, channels_first))
        tolerance = resolve_tolerance(cfg.tolerances, "tf_vs_port", "")
        mapping["layers"], mapping["first_divergence"] = layers_trace.compare_layers(
            pairing.pairs, tf_values, captured, modules, tolerance, channels_first
        )
        artifacts.save_json(out / artifacts.PORT_MAPPING, mapping)
    if cfg.save_weights:
        _save_weights(module, Path(cfg.save_weights))
    return {
        "parameters_set": len(rows),
        "errors": sum(f["severity"] == "error" for f in findings),
        "warnings": sum(f["severity"] == "warning" for f in findings),
        "saved_weights": cfg.save_weights,
    }


def _to_torch(feeds: dict[str, np.ndarray], channels_first: bool) -> list:
    import torch

    tensors = []
    for array in feeds.values():
        if channels_first and array.ndim in (4, 5):
            array = np.moveaxis(array, -1, 1)  # the port takes NCHW images (NCDHW volumes)
        tensors.append(torch.from_numpy(np.ascontiguousarray(array)))
    return tensors


def _record(module, first: dict[str, np.ndarray], channels_first: bool):
    """One forward pass with hooks: each module's call order and first input/output shapes. A forward
    that raises is the port's bug: its message (with the user's line) is returned, shapes so far kept."""
    import torch

    trace: dict[str, dict[str, Any]] = {}
    handles = []
    for name, sub in module.named_modules():
        if not name:
            continue

        def hook(mod, args, output, name=name):
            if name in trace:
                return
            trace[name] = {"order": len(trace), "in": _shape(args), "out": _shape(output)}

        handles.append(sub.register_forward_hook(hook))
    failure = None
    try:
        with torch.no_grad():
            module(*_to_torch(first, channels_first))
    except Exception as exc:
        failure = _describe_forward_error(exc, module)
    finally:
        for handle in handles:
            handle.remove()
    return trace, failure


def _describe_forward_error(exc: BaseException, module) -> str:
    import inspect

    try:
        path = Path(inspect.getfile(type(module)))
    except (TypeError, OSError):
        return f"{type(exc).__name__}: {exc}"
    return user_module.user_error(exc, path)


def _shape(value) -> list[int] | None:
    import torch

    if isinstance(value, torch.Tensor):
        return list(value.shape)
    if isinstance(value, (tuple, list)) and value:
        return _shape(value[0])
    return None


def _sites(module, trace: dict[str, Any]) -> list[match.TorchSite]:
    """Submodules that hold parameters or buffers themselves, in call order (uncalled ones last);
    nn.MultiheadAttention's own out_proj belongs to it."""
    import torch.nn as nn

    found = []
    inside_attention: list[str] = []
    for name, sub in module.named_modules():
        if any(name.startswith(prefix + ".") for prefix in inside_attention):
            continue
        if isinstance(sub, nn.MultiheadAttention):
            inside_attention.append(name)
        own = {
            k: tuple(v.shape)
            for k, v in (*sub.named_parameters(recurse=False), *sub.named_buffers(recurse=False))
        }
        own.pop("num_batches_tracked", None)
        if not own:
            continue
        kind = rules.torch_kind(sub)
        site = match.TorchSite(name or "(the module itself)", kind, type(sub).__name__, params=own)
        if kind == "rnn":
            site.num_layers = sub.num_layers
        found.append(site)
    rank = {name: i for i, name in enumerate(n for n, _ in module.named_modules())}
    return sorted(
        found, key=lambda s: (trace.get(s.name, {}).get("order", len(trace) + rank.get(s.name, 0)),)
    )


def _row(slots: list[rules.Slot], site: match.TorchSite, item: rules.Assignment) -> dict[str, Any]:
    shapes = {w["path"]: w["shape"] for s in slots for w in s.weights()}
    return {
        "tf_layer": ", ".join(s.label for s in slots),
        "tf_variables": item.sources,
        "tf_shapes": [shapes.get(p) for p in item.sources],
        "torch_parameter": f"{site.name}.{item.param}",
        "torch_shape": list(item.value.shape),
        "transform": item.transform,
    }


def _unmatched_tf(slot: rules.Slot) -> dict[str, Any]:
    if slot.kind is None:
        why = f"no transfer rule for Keras {slot.cls}"
    else:
        why = f"no {rules.KIND_NAMES[slot.kind]} left in the port for it (expected {checks.expected_module(slot)})"
    return {
        "side": "tf",
        "name": slot.label,
        "shapes": slot.shapes(),
        "message": f"Keras `{slot.label}` ({slot.cls}: {slot.shapes()}): {why}",
    }


def _unmatched_torch(site: match.TorchSite) -> dict[str, Any]:
    shapes = ", ".join(f"{k} {v}" for k, v in site.params.items())
    why = "no Keras layer left for it" if site.kind else f"no transfer rule for torch {site.cls}"
    return {
        "side": "torch",
        "name": site.name,
        "shapes": shapes,
        "message": f"`{site.name}` ({site.cls}: {shapes}): {why}",
    }


def _assign(modules: dict[str, Any], assignments: list[tuple[str, rules.Assignment]]) -> None:
    import torch

    with torch.no_grad():
        for name, item in assignments:
            owner = modules[name]
            *parents, leaf = item.param.split(".")
            for part in parents:
                owner = getattr(owner, part)
            target = getattr(owner, leaf)
            target.copy_(torch.from_numpy(np.asarray(item.value, dtype=np.float32)).to(target.dtype))


def _run_samples(module, feeds: dict[str, np.ndarray], names: list[str], channels_first: bool):
    import torch

    samples = next(iter(feeds.values())).shape[0]
    collected: dict[str, list[np.ndarray]] = {}
    for index in range(samples):
        batch = {k: v[index] for k, v in feeds.items()}
        try:
            with torch.no_grad():
                result = module(*_to_torch(batch, channels_first))
        except Exception as exc:
            raise UsageError(f"the port's forward failed: {_describe_forward_error(exc, module)}") from None
        for name, value in _outputs(result, names, channels_first).items():
            collected.setdefault(name, []).append(value)
    return {k: np.stack(v) for k, v in collected.items()}


def _outputs(result, names: list[str], channels_first: bool) -> dict[str, np.ndarray]:
    import torch

    if isinstance(result, dict):
        values = list(result.values())
    elif isinstance(result, (tuple, list)):
        values = list(result)
    else:
        values = [result]
    if len(values) != len(names):
        raise UsageError(
            f"the port returns {len(values)} output(s), the Keras model {len(names)} ({', '.join(names)})"
        )
    arrays = {}
    for index, value in enumerate(values):
        if not isinstance(value, torch.Tensor):
            raise UsageError(f"the port's forward returned a {type(value).__name__}; verify compares tensors")
        array = value.detach().numpy()
        if channels_first and array.ndim in (4, 5):
            array = np.moveaxis(array, 1, -1)  # back to TF's channels-last for the comparison
        arrays[names[index]] = array
    return arrays


def _save_weights(module, path: Path) -> None:
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        artifacts.write_atomic(path, lambda tmp: save_file(tensors, str(tmp)))
    except OSError as exc:
        raise UsageError(f"cannot write --save-weights {path}: {exc.strerror or exc}") from None
