"""Layers a person would write, recovered from the primitive ops tf2onnx spells them in: LayerNorm and
RMSNorm, GELU (exact and tanh), attention as F.scaled_dot_product_attention, and table lookups as
nn.Embedding.

Each is found by what it computes, not by how the graph spells it (tf2onnx, Keras versions and
opsets spell them differently): a candidate region of the graph, from an input to an output, whose
recorded values at both input sets equal the layer applied to the input's, with the region's other
nodes used nowhere else. The driver verifies the whole model again after each pass.
"""

from __future__ import annotations

import math
import operator

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from pipeline.torch_worker.native import fxutil, layers
from pipeline.torch_worker.native.context import PassContext

_MEAN = (torch.mean, "mean")
_MATMUL = (torch.matmul, operator.matmul, torch.bmm)
_SCALE_OPS = (operator.mul, torch.mul, operator.truediv, torch.div)


def _close(got: torch.Tensor, want: torch.Tensor) -> bool:
    if not isinstance(got, torch.Tensor) or not isinstance(want, torch.Tensor) or got.shape != want.shape:
        return False
    if not want.is_floating_point():
        return False
    scale = float(want.abs().max()) if want.numel() else 0.0
    return bool(torch.allclose(got.float(), want.float(), atol=1e-5 + 1e-5 * scale, rtol=1e-4))


def region(start: set[fx.Node], end: fx.Node, limit: int = 40, closed: bool = True) -> list[fx.Node] | None:
    """The nodes on a path from `start` to `end` (`end` included), in graph order; None when one of
    them, `end` excepted, is used outside the region, when there are more than `limit`, or (`closed`)
    when the region reads anything but `start`, constants and input sizes."""
    order = {n: i for i, n in enumerate(end.graph.nodes)}
    if any(n not in order for n in start) or end not in order:
        return None
    first = min(order[n] for n in start)
    after_start: set[fx.Node] = set()
    for node in sorted(start, key=order.__getitem__):
        stack = [node]
        while stack:
            for user in stack.pop().users:
                if user not in after_start and order[user] <= order[end]:
                    after_start.add(user)
                    stack.append(user)
    inside: set[fx.Node] = set()
    stack = [end]
    while stack:
        node = stack.pop()
        if node in inside or node in start or order[node] < first or node not in after_start:
            continue
        inside.add(node)
        if len(inside) > limit:
            return None
        stack.extend(node.all_input_nodes)
    if end not in inside:
        return None
    for node in inside:
        if node is not end and any(user not in inside for user in node.users):
            return None
        if closed and any(
            a not in inside and a not in start and a.op != "get_attr" and not _is_size(a)
            for a in node.all_input_nodes
        ):
            return None
    return sorted(inside, key=order.__getitem__)


def _is_size(node: fx.Node) -> bool:
    return (node.op == "call_method" and node.target == "size") or (
        node.op == "call_function"
        and node.target in (operator.mul, operator.floordiv, operator.add)
        and all(not isinstance(a, fx.Node) or _is_size(a) for a in node.args)
        and any(isinstance(a, fx.Node) for a in node.args)
    )


def _replace(gm: fx.GraphModule, end: fx.Node, make) -> None:
    with gm.graph.inserting_before(end):
        new = make(gm.graph)
    end.replace_all_uses_with(new)
    fxutil.tidy(gm)


# --- LayerNorm / RMSNorm


def layer_norms(gm: fx.GraphModule, ctx: PassContext) -> list[str]:
    if not any(n.target in _MEAN for n in gm.graph.nodes):
        return []  # no mean, no norm: nothing worth recording the values for
    runs = ctx.values(gm)
    keras = ctx.layer_variables(("LayerNormalization", "RMSNormalization"))
    used: set[str] = set()
    done = 0
    for mean in [n for n in gm.graph.nodes if _is_last_axis_mean(n, runs[0])]:
        if mean.graph is None or mean not in set(gm.graph.nodes):
            continue
        x, rms = mean.args[0], False
        if _is_square(x):
            x, rms = x.args[0], True  # mean(x * x) or mean(x ** 2): RMSNorm
        if x.name not in runs[0]:  # a norm this pass just wrote feeds this one (norm after norm)
            runs = ctx.values(gm)
        found = _norm_after(gm, mean, x, rms, runs)
        if found is None:
            continue
        end, eps, weight, bias = found
        width = runs[0][x.name].shape[-1]
        layer, sources = _keras_norm(keras, weight, bias, used)
        module = nn.RMSNorm(width, eps=eps) if rms else nn.LayerNorm(width, eps=eps, bias=bias is not None)
        with torch.no_grad():
            module.weight.copy_(weight)
            if bias is not None:
                module.bias.copy_(bias)
        layers.tag(module, layer, sources)
        name = fxutil.fresh_name(gm, layer or ("rms_norm" if rms else "layer_norm"))
        gm.add_submodule(name, module)
        _replace(gm, end, lambda g, name=name, x=x: g.call_module(name, (x,)))
        done += 1
    ctx.count("layer_norms", done)
    return []


def _is_square(node: fx.Node) -> bool:
    if node.op != "call_function" or len(node.args) != 2:
        return False
    if node.target in (operator.mul, torch.mul):
        return node.args[0] is node.args[1]
    exponent = node.args[1]
    if isinstance(exponent, fx.Node):
        value = fxutil.constant(node.graph.owning_module, exponent)
        exponent = float(value) if value is not None and value.numel() == 1 else None
    return node.target in (operator.pow, torch.pow) and exponent == 2


def _is_last_axis_mean(node: fx.Node, values: dict) -> bool:
    if node.target not in _MEAN or node.op not in ("call_function", "call_method"):
        return False
    value = values.get(node.args[0].name) if isinstance(node.args[0], fx.Node) else None
    if not isinstance(value, torch.Tensor) or not value.is_floating_point() or value.dim() < 2:
        return False
    dims = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
    dims = [dims] if isinstance(dims, int) else list(dims or [])
    keep = node.kwargs.get("keepdim", node.args[2] if len(node.args) > 2 else False)
    return bool(keep) and len(dims) == 1 and dims[0] in (-1, value.dim() - 1)


def _norm_after(gm, mean, x, rms, runs):
    """The first node after `mean` that is a LayerNorm (RMSNorm) of x with a per-feature scale and shift."""
    nodes = list(gm.graph.nodes)
    start = nodes.index(mean)
    xa = runs[0][x.name]
    for end in nodes[start + 1 : start + 30]:
        ya = runs[0].get(end.name)
        if not isinstance(ya, torch.Tensor) or ya.shape != xa.shape or not ya.is_floating_point():
            continue
        inside = region({x}, end)
        if inside is None or mean not in inside:
            continue
        for eps in _epsilons(gm, inside):
            fitted = _fit_affine(_normalise(xa, eps, rms), ya)
            if fitted is None:
                continue
            for weight, bias in _candidates(gm, inside, fitted):
                if all(
                    _close(
                        _normalise(run[x.name], eps, rms) * weight + (0 if bias is None else bias),
                        run[end.name],
                    )
                    for run in runs
                ):
                    return end, eps, weight, bias
    return None


def _normalise(x: torch.Tensor, eps: float, rms: bool) -> torch.Tensor:
    x = x.double()
    if rms:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    centred = x - x.mean(-1, keepdim=True)
    return centred * torch.rsqrt(centred.pow(2).mean(-1, keepdim=True) + eps)


def _epsilons(gm, inside) -> list[float]:
    found = []
    for node in inside:
        for arg in node.args:
            value = fxutil.constant(gm, arg)
            number = float(value) if value is not None and value.numel() == 1 else arg
            if isinstance(number, float) and 0 < number < 0.1:
                number = float(str(np.float32(number)))  # 1e-3, not the float32 0.0010000000474974513
                if number not in found:
                    found.append(number)
    return found + [e for e in (1e-5, 1e-6, 1e-3, 1e-12) if e not in found]


def _fit_affine(n: torch.Tensor, y: torch.Tensor):
    """Per-feature (scale, shift) with y = n * scale + shift over every row, or None."""
    n2, y2 = n.reshape(-1, n.shape[-1]), y.double().reshape(-1, y.shape[-1])
    if n2.shape[0] < 2:
        return None
    nm, ym = n2.mean(0), y2.mean(0)
    var = (n2 - nm).pow(2).mean(0)
    if bool((var < 1e-12).any()):
        return None
    scale = ((n2 - nm) * (y2 - ym)).mean(0) / var
    shift = ym - scale * nm
    if not _close((n2 * scale + shift).float(), y2.float()):
        return None
    return scale.float(), shift.float()


def _candidates(gm, inside, fitted):
    """(weight, bias) to verify, best first: the graph's own constants nearest the fitted scale and
    shift (the exact float32 gamma and beta a model trains), then the fit itself. A fit from a few
    rows (a pooled head's LayerNorm sees one row per sample) is off by 1e-4 and more, which the outputs
    tolerate but would tie no parameter to its Keras variable. No shift where it is zero and no
    constant holds one."""
    scale, shift = fitted
    constants = [
        fxutil.constant(gm, a).reshape(-1).float()
        for n in inside
        for a in n.all_input_nodes
        if fxutil.constant(gm, a) is not None and fxutil.constant(gm, a).numel() == scale.numel()
    ]
    fitted_bias = None if float(shift.abs().max()) < 1e-7 else shift.float()
    weight = _nearest_constant(constants, scale)
    bias = _nearest_constant(constants, shift)
    if weight is not None:
        yield weight.clone(), (bias if bias is not None else fitted_bias)
    yield scale.float().clone(), fitted_bias


def _nearest_constant(constants: list[torch.Tensor], target: torch.Tensor) -> torch.Tensor | None:
    """The constant closest to `target`, if it is within 1% of its scale (a fit's error, not another
    tensor)."""
    target = target.float()
    limit = 1e-2 * max(1.0, float(target.abs().max()))
    scored = [(float((c - target).abs().max()), i) for i, c in enumerate(constants)]
    best = min(scored, default=None)
    return constants[best[1]].clone() if best is not None and best[0] <= limit else None


def _keras_norm(keras, weight, bias, used):
    for layer, variables in keras.items():
        gamma = variables.get("gamma") or variables.get("scale")
        if layer in used or gamma is None or gamma.value.size != weight.numel():
            continue
        if not torch.allclose(torch.from_numpy(gamma.value.reshape(-1)).float(), weight):
            continue
        used.add(layer)
        sources = {"weight": (gamma.path, "none")}
        if bias is not None and "beta" in variables:
            sources["bias"] = (variables["beta"].path, "none")
        return layer, sources
    return None, {}


# --- GELU


def gelus(gm: fx.GraphModule, ctx: PassContext) -> list[str]:
    if not any(n.op == "call_function" and n.target in (torch.erf, torch.tanh) for n in gm.graph.nodes):
        return []
    runs = ctx.values(gm)
    done = 0
    for core in [
        n for n in gm.graph.nodes if n.op == "call_function" and n.target in (torch.erf, torch.tanh)
    ]:
        if core not in set(gm.graph.nodes):
            continue
        found = _gelu_around(gm, core, runs)
        if found is None:
            continue
        x, end, approximate = found
        name = fxutil.fresh_name(gm, "gelu")
        gm.add_submodule(name, nn.GELU(approximate=approximate))
        _replace(gm, end, lambda g, name=name, x=x: g.call_module(name, (x,)))
        done += 1
    ctx.count("gelus", done)
    return []


def _gelu_around(gm, core, runs):
    nodes = list(gm.graph.nodes)
    at = nodes.index(core)
    starts = [n for n in reversed(nodes[max(0, at - 16) : at]) if n.op != "get_attr"]
    for x in starts:
        xa = runs[0].get(x.name)
        if not isinstance(xa, torch.Tensor) or not xa.is_floating_point():
            continue
        for end in [n for n in nodes[at + 1 : at + 12] if n.op != "get_attr"]:
            inside = region({x}, end, limit=16)
            if inside is None or core not in inside:
                continue
            for approximate in ("none", "tanh"):
                if all(_close(F.gelu(run[x.name], approximate=approximate), run[end.name]) for run in runs):
                    return x, end, approximate
    return None


# --- attention


def attention(gm: fx.GraphModule, ctx: PassContext) -> list[str]:
    """softmax(q @ kᵀ · scale + mask) @ v, with whatever reshapes and mask arithmetic lie between the
    two matmuls, as F.scaled_dot_product_attention(q, k, v, attn_mask=..., scale=...)."""
    softmaxes = [n for n in gm.graph.nodes if _is_softmax(gm, n)]
    if not softmaxes:
        return []
    runs = ctx.values(gm)
    done = 0
    for softmax in softmaxes:
        first = _nearest(softmax, lambda n: n.op == "call_function" and n.target in _MATMUL, up=True)
        second = _nearest(softmax, lambda n: n.op == "call_function" and n.target in _MATMUL, up=False)
        if first is None or second is None:
            continue
        q, key_t = first.args
        probabilities, v = second.args
        inside = region({first, v}, second, limit=40, closed=False)
        if inside is None or softmax not in inside:
            continue
        found = _attention_call(gm, q, key_t, v, inside, first, second, runs, ctx)
        if found is None:
            continue
        _replace(gm, second, found)
        done += 1
    ctx.count("attention", done)
    return []


def _is_softmax(gm, node) -> bool:
    if node.op == "call_module":
        module = fxutil.module_of(gm, node)
        return isinstance(module, nn.Softmax) and module.dim in (-1, None)
    return node.op == "call_function" and node.target in (torch.softmax, F.softmax)


def _nearest(node, wanted, up: bool, steps: int = 8):
    frontier = [node]
    for _ in range(steps):
        frontier = [m for n in frontier for m in (n.all_input_nodes if up else n.users)]
        for candidate in frontier:
            if wanted(candidate):
                return candidate
    return None


def _attention_call(gm, q, key_t, v, inside, first, second, runs, ctx):
    """The first reading of the region as scaled_dot_product_attention that the recorded values
    confirm: at the two input sets, then at every sample (masks differ where whole rows are masked)."""
    everywhere: list = []

    def confirmed(*reading) -> bool:
        if not all(_sdpa_matches(run, *reading) for run in runs):
            return False
        if not everywhere:
            everywhere[:] = ctx.every_sample_values(gm)[len(runs) :]
        return all(_sdpa_matches(run, *reading) for run in everywhere)

    masks = [None] + _mask_forms(gm, _mask_candidates(gm, inside, first, runs[0]), inside, runs[0])
    queries = [(q, None)]
    if q.op == "call_function" and q.target in _SCALE_OPS and len(q.args) == 2:
        number = _number(gm, q.args[1])
        if number:
            factor = number if q.target in (operator.mul, torch.mul) else 1 / number
            queries.append((q.args[0], factor))  # Keras scales the query before q @ kᵀ
    for query, factor in queries:
        width = runs[0][query.name].shape[-1]
        for scale in _scales(gm, factor, inside):
            for mask in masks:
                if confirmed(query, key_t, v, mask, scale, second):
                    flatten = mask is not None and runs[0][mask[0].name].dim() != runs[0][query.name].dim()
                    return _builder(query, key_t, v, mask, flatten, scale, width)
    return None


def _number(gm, arg) -> float | None:
    value = fxutil.constant(gm, arg)
    if value is not None and value.numel() == 1 and value.is_floating_point():
        return float(value)
    return float(arg) if isinstance(arg, (int, float)) and not isinstance(arg, bool) else None


def _scales(gm, factor, inside) -> list[float | None]:
    """None (the default 1/sqrt(width)) first, then the query's factor, 1, and the region's numbers."""
    numbers = [_number(gm, a) for n in inside if n.target in _SCALE_OPS for a in n.args]
    numbers = [x for x in numbers if x]
    candidates = [None] + ([factor] if factor else []) + [1.0] + numbers + [1 / x for x in numbers]
    unique: list[float | None] = []
    for c in candidates:
        if c not in unique:
            unique.append(c)
    return unique


def _mask_candidates(gm, inside, first, values) -> list[fx.Node]:
    """Boolean or additive tensors read by the region from outside it (and what they were made from)."""
    members = set(inside)
    outside = [a for n in inside for a in n.all_input_nodes if a not in members and a is not first]
    found, frontier = [], outside
    for _ in range(4):
        nxt = []
        for node in frontier:
            value = values.get(node.name)
            if (
                node.op != "get_attr"
                and isinstance(value, torch.Tensor)
                and value.dim() >= 2
                and node not in found
            ):
                found.append(node)
            nxt += node.all_input_nodes
        frontier = nxt
    return [n for n in found if values[n.name].dtype == torch.bool] + [
        n for n in found if values[n.name].dtype != torch.bool
    ]


def _mask_forms(gm, candidates: list[fx.Node], inside, values) -> list[tuple[fx.Node, float | None]]:
    """Each mask candidate as (node, fill): a boolean mask the region turns into the large negative
    it adds (Keras adds -1e9 where the mask is False) is tried first as that additive mask, which
    keeps Keras's arithmetic where a whole row is masked (uniform weights, not NaN); then as is."""
    # the number is in the region or in the mask arithmetic just before it
    near = [*inside, *candidates, *(a for n in candidates for a in n.all_input_nodes)]
    fills = sorted({x for n in near for a in n.args if (x := _number(gm, a)) is not None and x <= -1e4})
    forms: list[tuple[fx.Node, float | None]] = []
    for node in candidates:
        if values[node.name].dtype == torch.bool:
            forms += [(node, fill) for fill in fills]
        forms.append((node, None))
    return forms


def _mask_value(mask: tuple[fx.Node, float | None], run) -> torch.Tensor:
    node, fill = mask
    value = run[node.name]
    return value if fill is None else torch.where(value, 0.0, fill)


def _as_3d_or_4d(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A [B, H, L, S] mask for a [B*H, L, S] attention: flattened over its leading axes."""
    return mask if mask.dim() == like.dim() else mask.reshape(-1, *mask.shape[-2:])


def _sdpa_matches(run, query, key_t, v, mask, scale, second) -> bool:
    q, kt, vv = run[query.name], run[key_t.name], run[v.name]
    if not all(isinstance(t, torch.Tensor) and t.is_floating_point() for t in (q, kt, vv)):
        return False
    attn_mask = None if mask is None else _as_3d_or_4d(_mask_value(mask, run), q)
    try:
        got = F.scaled_dot_product_attention(q, kt.transpose(-2, -1), vv, attn_mask=attn_mask, scale=scale)
    except RuntimeError:
        return False
    return _close(got, run[second.name])


def _builder(query, key_t, v, mask, flatten, scale, width):
    def make(graph: fx.Graph) -> fx.Node:
        key = _untransposed(graph, key_t)
        kwargs = {}
        if mask is not None:
            node, fill = mask
            attn_mask = node if fill is None else graph.call_function(torch.where, (node, 0.0, fill))
            if flatten:  # a [B, H, L, S] mask for attention over [B*H, L, S]
                sizes = [graph.call_method("size", (attn_mask, axis)) for axis in (-2, -1)]
                attn_mask = graph.call_method("reshape", (attn_mask, -1, *sizes))
            kwargs["attn_mask"] = attn_mask
        if scale is not None and not math.isclose(scale, 1 / math.sqrt(width), rel_tol=1e-6):
            kwargs["scale"] = scale
        return graph.call_function(F.scaled_dot_product_attention, (query, key, v), kwargs)

    return make


def _untransposed(graph: fx.Graph, key_t: fx.Node) -> fx.Node:
    """k from kᵀ: the permute that made kᵀ undone where there is one, else a transpose."""
    if key_t.op == "call_method" and key_t.target == "permute" and len(key_t.users) == 1:
        dims = list(key_t.args[1]) if isinstance(key_t.args[1], (list, tuple)) else list(key_t.args[1:])
        swapped = list(range(len(dims)))
        swapped[-2:] = swapped[-1], swapped[-2]
        if dims == swapped:
            return key_t.args[0]
    return graph.call_method("transpose", (key_t, -2, -1))


# --- Embedding


def embeddings(gm: fx.GraphModule, ctx: PassContext) -> list[str]:
    """`table[indices]` on a 2-D weight -> nn.Embedding (named after the Keras layer that holds it)."""
    keras = ctx.layer_variables("Embedding")
    done = 0
    for node in list(gm.graph.nodes):
        lookup = _lookup(gm, node)
        if lookup is None:
            continue
        table, indices = lookup
        weight = fxutil.constant(gm, table)
        module = nn.Embedding(*weight.shape)
        with torch.no_grad():
            module.weight.copy_(weight)
        layer = next(
            (
                name
                for name, variables in keras.items()
                if "embeddings" in variables
                and variables["embeddings"].value.shape == tuple(weight.shape)
                and torch.equal(torch.from_numpy(variables["embeddings"].value), weight)
            ),
            None,
        )
        if layer:
            layers.tag(module, layer, {"weight": (keras[layer]["embeddings"].path, "none")})
        name = fxutil.fresh_name(gm, layer or "embedding")
        gm.add_submodule(name, module)
        _replace(gm, node, lambda g, name=name, indices=indices: g.call_module(name, (indices,)))
        done += 1
    ctx.count("embeddings", done)
    return []


def _lookup(gm, node):
    is_index = (node.op, node.target) in (("call_function", operator.getitem), ("call_method", "__getitem__"))
    if not is_index:
        return None
    table, index = node.args
    weight = fxutil.constant(gm, table)
    if weight is None or weight.dim() != 2 or not weight.is_floating_point():
        return None
    if isinstance(index, tuple) and len(index) == 1:
        index = index[0]
    if not isinstance(index, fx.Node):
        return None
    return table, index
