"""The classic porting mistakes, named (no torch import: modules are read through their attributes).

Each check returns findings: {"severity": "error" | "warning", "tf_layer", "torch_module", "message"}.
An error explains outputs that cannot match (padding, batch axis, gate activations); a warning is a
difference the outputs may not show (normalization epsilon, BatchNorm momentum for training).
`explain_mismatch` turns a shape mismatch of the transfer into a message with the likely cause.
"""

from __future__ import annotations

import math
from typing import Any

from pipeline.torch_worker.port.match import TorchSite
from pipeline.torch_worker.port.rules import RNN_TORCH, Slot

Finding = dict[str, Any]


def finding(severity: str, slot: Slot | None, site: TorchSite | None, message: str) -> Finding:
    return {
        "severity": severity,
        "tf_layer": slot.label if slot else None,
        "torch_module": site.name if site else None,
        "message": message,
    }


def check_pair(slots: list[Slot], site: TorchSite, module, trace: dict[str, Any]) -> list[Finding]:
    slot = slots[0]
    checks = {
        "conv": _conv_checks,
        "conv_transpose": _conv_checks,
        "batchnorm": _norm_checks,
        "layernorm": _norm_checks,
        "rnn": _rnn_checks,
    }.get(slot.kind)
    if checks is None:
        return []
    return [finding(sev, s, site, msg) for s in slots for sev, msg in checks(s, site, module, trace)]


def _ntuple(value, n: int) -> tuple:
    return tuple(value) if isinstance(value, (list, tuple)) else (value,) * n


def _conv_checks(slot: Slot, site: TorchSite, module, trace):
    cfg = slot.config
    n = len(module.kernel_size)
    strides = _ntuple(cfg.get("strides", 1), n) if slot.part != "pointwise" else (1,) * n
    dilation = _ntuple(cfg.get("dilation_rate", 1), n) if slot.part != "pointwise" else (1,) * n
    who = f"`{site.name}`", f"Keras `{slot.label}`"
    if tuple(module.stride) != strides:
        yield "error", f"{who[0]} has stride={tuple(module.stride)} where {who[1]} uses strides={strides}"
    if tuple(module.dilation) != dilation:
        yield "error", f"{who[0]} has dilation={tuple(module.dilation)} where {who[1]} uses {dilation}"
    padding = str(cfg.get("padding", "valid")).lower()
    if slot.kind == "conv_transpose":
        yield from _transpose_padding(slot, site, module, padding, strides, dilation)
        return
    if slot.part == "pointwise":
        return
    torch_padding = module.padding
    if padding == "valid":
        if torch_padding not in ("valid", (0,) * n):
            yield (
                "error",
                f"{who[0]} has padding={torch_padding} where {who[1]} uses padding='valid' (no padding): "
                f"use padding=0",
            )
        return
    if padding != "same" or torch_padding == "same":
        return
    sizes = (slot.layer.get("input_shape") or [None] * (n + 2))[1:-1]
    needed = [
        _same_padding(size, k, s, d)
        for size, k, s, d in zip(sizes, module.kernel_size, strides, dilation, strict=False)
    ]
    if any(p is None for p in needed) or len(needed) != n:
        return
    before = tuple(p[0] for p in needed)
    after = tuple(p[1] for p in needed)
    if before == after:
        if tuple(torch_padding) != before:
            yield (
                "error",
                f"{who[0]} has padding={tuple(torch_padding)}; Keras padding='same' here is padding={before}",
            )
        return
    recorded = (trace.get(site.name) or {}).get("in")
    manual = recorded is not None and tuple(recorded[2:]) == tuple(
        s + b + a for s, b, a in zip(sizes, before, after, strict=True)
    )
    if tuple(torch_padding) == (0,) * n and manual:
        return  # the port pads its input itself (F.pad / nn.ZeroPad2d) to the right size
    pad_args = ", ".join(f"{b}, {a}" for b, a in reversed(needed))
    yield (
        "error",
        f"Keras `{slot.label}` (padding='same', kernel {tuple(module.kernel_size)}, strides {strides}) pads "
        f"{before} before and {after} after; {who[0]} has padding={tuple(torch_padding)}, the same on both "
        f"sides, so its windows are shifted. Use padding=0 and pad the input with F.pad(x, ({pad_args})) "
        f"(or nn.ZeroPad{n}d)",
    )


def _transpose_padding(slot: Slot, site: TorchSite, module, padding: str, strides, dilation):
    """Keras's transposed conv crops its full output; torch crops `padding` on both sides and adds
    `output_padding` at the end. 'same' crops k - s in all, the odd one at the end."""
    n = len(module.kernel_size)
    torch_padding, extra = tuple(module.padding), tuple(module.output_padding)
    if padding == "valid":
        if torch_padding != (0,) * n or extra != (0,) * n:
            yield (
                "error",
                f"`{site.name}` has padding={torch_padding}, output_padding={extra}; Keras `{slot.label}` uses 'valid': use 0 and 0",
            )
        return
    totals = [
        max((k - 1) * d + 1 - s, 0) for k, s, d in zip(module.kernel_size, strides, dilation, strict=True)
    ]
    before = tuple(t // 2 for t in totals)
    if all(t % 2 == 0 for t in totals):
        if torch_padding != before or extra != (0,) * n:
            yield (
                "error",
                f"Keras `{slot.label}` (padding='same') is torch padding={before}, output_padding=0; `{site.name}` has padding={torch_padding}, output_padding={extra}",
            )
        return
    if torch_padding != before or extra != (0,) * n:
        yield (
            "error",
            f"Keras `{slot.label}` (padding='same', kernel {tuple(module.kernel_size)}, strides {strides}) crops "
            f"{before} at the start and one more at the end; `{site.name}` has padding={torch_padding}, "
            f"output_padding={extra}, which shifts the output by one. Use padding={before}, output_padding=0 "
            f"and drop the last row/column of its output (y[..., :-1, :-1])",
        )


def _same_padding(size: int | None, kernel: int, stride: int, dilation: int) -> tuple[int, int] | None:
    if size is None:
        return None
    extent = (kernel - 1) * dilation + 1
    total = max((math.ceil(size / stride) - 1) * stride + extent - size, 0)
    return total // 2, total - total // 2


def _norm_checks(slot: Slot, site: TorchSite, module, trace):
    cfg = slot.config
    epsilon = cfg.get("epsilon")
    if epsilon is not None and not math.isclose(module.eps, epsilon, rel_tol=1e-6):
        kind = "BatchNorm" if slot.kind == "batchnorm" else "LayerNorm"
        yield (
            "warning",
            f"epsilon differs: `{site.name}` has eps={module.eps:g}, Keras `{slot.label}` epsilon={epsilon:g} "
            f"(Keras defaults to 1e-3, torch to 1e-5): pass eps={epsilon:g} to the {kind}",
        )
    momentum = cfg.get("momentum")
    torch_momentum = getattr(module, "momentum", None)
    known = slot.kind == "batchnorm" and momentum is not None and torch_momentum is not None
    if known and not math.isclose(torch_momentum, 1 - momentum, abs_tol=1e-9):
        yield (
            "warning",
            f"momentum differs for training: Keras `{slot.label}` keeps {momentum:g} of the running "
            f"statistics, torch's momentum is the share of the new batch: use momentum={1 - momentum:.4g}, "
            f"not {torch_momentum:g}",
        )


def _rnn_checks(slot: Slot, site: TorchSite, module, trace):
    cfg = slot.config.get("layer", slot.config) if slot.cls == "Bidirectional" else slot.config
    cls = slot.config.get("layer_class") if slot.cls == "Bidirectional" else slot.cls
    torch_class = RNN_TORCH.get(cls)
    gates = (cfg.get("activation", "tanh"), cfg.get("recurrent_activation", "sigmoid"))
    if torch_class in ("LSTM", "GRU") and gates != ("tanh", "sigmoid"):
        yield (
            "error",
            f"Keras `{slot.label}` uses activation={gates[0]}, recurrent_activation={gates[1]}; "
            f"nn.{torch_class} computes tanh and sigmoid only",
        )
    if torch_class == "RNN" and cfg.get("activation", "tanh") != module.nonlinearity:
        yield (
            "error",
            f"Keras `{slot.label}` uses {cfg.get('activation')}, `{site.name}` nonlinearity={module.nonlinearity}",
        )
    if cls == "GRU" and cfg.get("reset_after") is False:
        yield (
            "error",
            f"Keras `{slot.label}` has reset_after=False (the reset gate applied before the recurrent matmul); "
            f"nn.GRU applies it after: no nn.GRU computes this layer",
        )
    if cfg.get("go_backwards"):
        yield (
            "error",
            f"Keras `{slot.label}` runs backwards (go_backwards=True): flip the time axis for `{site.name}`",
        )
    if slot.cls == "Bidirectional" and slot.config.get("merge_mode", "concat") != "concat":
        yield (
            "error",
            f"Keras `{slot.label}` merges directions with merge_mode={slot.config.get('merge_mode')!r}; "
            f"`{site.name}` concatenates them",
        )


def batch_axis_findings(
    pairs, trace: dict[str, Any], batch: int, rnn_sites: list[TorchSite], modules
) -> list[Finding]:
    """A module fed a tensor whose leading axis is not the batch (`lstm_out[-1]` on a batch-first output),
    and an RNN reading Keras's (batch, time, features) as (time, batch, features)."""
    found: list[Finding] = []
    for site in rnn_sites:
        module = modules[site.name]
        recorded = (trace.get(site.name) or {}).get("in")
        if not module.batch_first and recorded and len(recorded) == 3 and recorded[0] == batch != recorded[1]:
            found.append(
                finding(
                    "error",
                    None,
                    site,
                    f"`{site.name}` has batch_first=False, so it reads (time, batch, features), but it is fed "
                    f"{tuple(recorded)} in Keras's (batch, time, features) order: pass batch_first=True",
                )
            )
    for slots, site in pairs:
        slot = slots[0]
        tf_in = slot.layer.get("input_shape")
        recorded = (trace.get(site.name) or {}).get("in")
        if not tf_in or not recorded or tf_in[0] is not None or len(tf_in) != len(recorded):
            continue
        if recorded[0] == batch:
            continue
        expected = (batch, *tf_in[1:])
        message = (
            f"`{site.name}` receives {tuple(recorded)} where Keras `{slot.label}` receives {expected}: the "
            f"batch axis ({batch} samples) is gone before it"
        )
        before = [s for s in rnn_sites if trace.get(s.name, {}).get("order", 1e9) < trace[site.name]["order"]]
        if before:
            rnn = before[-1]
            steps = recorded[0]
            if modules[rnn.name].batch_first:
                message += (
                    f". `{rnn.name}` has batch_first=True, so its output is (batch, time, features) and "
                    f"`output[-1]` is the last sample's {steps} steps, not every sample's last step: use "
                    f"`output[:, -1]`"
                )
            else:
                message += (
                    f". `{rnn.name}` has batch_first=False: with Keras's (batch, time, features) input it runs "
                    f"over the batch as if it were time; pass batch_first=True and take `output[:, -1]`"
                )
        found.append(finding("error", slot, site, message))
    return found


def expected_module(slot: Slot) -> str:
    """The torch constructor that takes this slot's weights, e.g. nn.Linear(5408, 10)."""
    shapes = {w["name"]: w["shape"] for w in slot.weights()}
    cfg = slot.config
    if slot.kind == "linear":
        kernel = shapes.get("kernel", [0, 0])
        return f"nn.Linear({kernel[0]}, {kernel[-1]}{'' if 'bias' in shapes else ', bias=False'})"
    if slot.kind == "conv" and ("depthwise_kernel" in shapes or slot.cls.startswith("Depthwise")):
        k = shapes.get("depthwise_kernel") or shapes["kernel"]
        n = len(k) - 2
        return f"nn.Conv{n}d({k[-2]}, {k[-2] * k[-1]}, kernel_size={tuple(k[:n])}, groups={k[-2]})"
    if slot.kind in ("conv", "conv_transpose"):
        k = shapes.get("pointwise_kernel") or shapes.get("kernel")
        n = len(k) - 2
        cin, cout = (k[-1], k[-2]) if slot.kind == "conv_transpose" else (k[-2], k[-1])
        name = "ConvTranspose" if slot.kind == "conv_transpose" else "Conv"
        return f"nn.{name}{n}d({cin}, {cout}, kernel_size={tuple(k[:n])})"
    if slot.kind == "batchnorm":
        size = next(iter(shapes.values()))[0]
        return f"nn.BatchNorm2d({size}, eps={cfg.get('epsilon', 1e-3):g}, momentum={1 - cfg.get('momentum', 0.99):.4g})"
    if slot.kind == "layernorm":
        return f"nn.LayerNorm({next(iter(shapes.values()))[0]}, eps={cfg.get('epsilon', 1e-3):g})"
    if slot.kind == "embedding":
        table = shapes.get("embeddings", [0, 0])
        return f"nn.Embedding({table[0]}, {table[1]})"
    if slot.kind == "rnn":
        inner = cfg.get("layer", cfg)
        cls = RNN_TORCH.get(cfg.get("layer_class") if slot.cls == "Bidirectional" else slot.cls, "LSTM")
        kernel = next(w["shape"] for w in slot.weights() if w["name"] == "kernel")
        extra = ", bidirectional=True" if slot.cls == "Bidirectional" else ""
        return f"nn.{cls}({kernel[0]}, {inner.get('units')}, batch_first=True{extra})"
    if slot.kind == "attention":
        return (
            f"nn.MultiheadAttention({shapes.get('kernel', [0])[0]}, {cfg.get('num_heads')}, batch_first=True)"
        )
    return "?"


def explain_mismatch(slot: Slot, site: TorchSite, message: str, findings: list[Finding]) -> str:
    """The transfer's shape mismatch, with its likely cause."""
    text = f"Keras `{slot.label}` ({slot.cls}: {slot.shapes()}) does not fit `{site.name}` ({site.cls}: " + (
        ", ".join(f"{k} {v}" for k, v in site.params.items())
        + f"): {message}. Keras needs {expected_module(slot)}"
    )
    kernel = next((w["shape"] for w in slot.weights() if w["name"] == "kernel"), None)
    weight = site.params.get("weight")
    if slot.kind == "linear" and kernel and weight:
        cin, cout = kernel[0], kernel[-1]
        if tuple(weight) == (cin, cout) and cin != cout:
            text += f". The arguments look swapped: nn.Linear(in_features, out_features) stores weight (out, in) = ({cout}, {cin})"
        elif weight[0] == cout and slot.layer.get("flatten_from"):
            text += _flatten_hint(slot.layer["flatten_from"], weight[1], findings)
    if slot.kind in ("conv", "conv_transpose") and kernel and weight and len(weight) == len(kernel):
        n = len(kernel) - 2
        if tuple(weight[:2]) == (kernel[n], kernel[n + 1]) and kernel[n] != kernel[n + 1]:
            text += ". In and out channels look swapped: the kernel is (k..., in, out), torch's weight (out, in, k...)"
    return text


def _flatten_hint(flat: list, torch_features: int, findings: list[Finding]) -> str:
    spatial, channels = flat[1:-1], flat[-1]
    keras = " x ".join(map(str, spatial))
    hint = f". Keras flattens a {keras} map of {channels} channels ({math.prod(spatial) * channels} features)"
    if torch_features % channels == 0:
        side = math.isqrt(torch_features // channels)
        if side * side == torch_features // channels and len(spatial) == 2:
            hint += f"; the port's map before the flatten is {side} x {side} ({torch_features} features)"
        hint += ": an earlier conv or pooling pads or strides differently"
    padding = [
        f"`{f['torch_module']}`" for f in findings if "padding" in f["message"] and f["severity"] == "error"
    ]
    if padding:
        hint += f" (see the padding of {', '.join(padding)})"
    return hint
