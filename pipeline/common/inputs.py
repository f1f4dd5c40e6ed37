"""Input specs and seeded random inputs. Numpy only.

The model declares its inputs (names, dtypes, shapes that may have unknown dimensions); the config
may override shape, dtype and value range per input. `resolve_specs` merges the two and fills an
unknown leading dimension with `batch_size`; `generate` draws `samples` batches from one seed.

Sample batches must reach the code the model runs on real data: a mask that is never active, a
padding id never fed, compares nothing. Inputs the model pads (token ids read by an Embedding, the
input of a `Masking` layer, a padding mask) get right-padded rows in every batch but the first: one
row at full length, one at the shortest length, the rest between (`padding_lengths`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from pipeline.config import InputSpec, PaddingSpec
from pipeline.errors import ConfigError


@dataclass(frozen=True)
class DetectedPadding:
    """What the model itself says about padding one of its inputs: the padded positions' value, whether
    the input is a padding mask (ones on real positions), and where that was read."""

    value: float
    source: str
    mask: bool = False


@dataclass(frozen=True)
class TensorInfo:
    """An input or output as the model declares it. `shape` may contain None for unknown sizes.
    `aliases` are other names users know it by: a signature's key (`image`) for a TFLite tensor
    (`serving_default_image:0`), or the tensor name for a SavedModel signature's key."""

    name: str
    dtype: str
    shape: tuple[int | None, ...] | None
    aliases: tuple[str, ...] = ()
    # Integer inputs that index an Embedding table directly: its row count (valid ids 0..n-1).
    vocabulary: int | None = None
    # Read from the model's layers (Embedding, Masking); inputs named like masks are found by name.
    padding: DetectedPadding | None = None

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Padding:
    """The padding `generate` applies to an input: along axis 1, past (or, `side: left`, before) each
    row's length. `source` says why (the layer that masks it, the config)."""

    value: float
    side: str
    min_len: int
    mask: bool
    source: str


@dataclass(frozen=True)
class ConcreteInput:
    name: str
    dtype: str
    shape: tuple[int, ...]
    low: float
    high: float
    padding: Padding | None = None

    def to_json(self) -> dict:
        return asdict(self)

    def describe(self, samples: int) -> dict:
        """to_json plus each sample batch's row lengths (None: not padded), for the report."""
        found = self.to_json()
        if self.padding is not None:
            found["padding"]["lengths"] = [
                padding_lengths(self.shape, self.padding.min_len, i, samples) for i in range(samples)
            ]
        return found


DEFAULT_RANGES = {"float": (0.0, 1.0), "int": (0, 10), "bool": (0, 2)}


def resolve_specs(
    declared: list[TensorInfo], configured: list[InputSpec] | None, batch_size: int
) -> list[ConcreteInput]:
    """The inputs to feed: the model's declarations with the config's `inputs:` applied. A config entry
    that contradicts the model (a name it does not have, another rank, a fixed size, dtype or value
    range it cannot take) is a ConfigError naming the key, the value, what the model expects and what
    to write instead."""
    known = {alias: info.name for info in declared for alias in (info.name, *info.aliases)}
    by_name: dict[str, tuple[int, InputSpec]] = {}
    unknown = []
    for index, spec in enumerate(configured or []):
        if spec.name not in known:
            unknown.append(spec.name)
        elif known[spec.name] in by_name:
            raise ConfigError(
                f"config `inputs` names the input '{known[spec.name]}' twice "
                f"(as '{by_name[known[spec.name]][1].name}' and '{spec.name}')"
            )
        else:
            by_name[known[spec.name]] = (index, spec)
    if unknown:
        names = ", ".join(f"{_fmt_names(i)} {_fmt_shape(i.shape)} {i.dtype}" for i in declared)
        raise ConfigError(
            f"config `inputs` names {', '.join(sorted(unknown))}, but the model's inputs are: {names}; "
            "write one of those names under `name:`"
        )
    detected = detected_padding(declared)
    return [
        _resolve_one(info, *by_name.get(info.name, (None, None)), batch_size, detected.get(info.name))
        for info in declared
    ]


# A padding mask by name: KerasHub's `padding_mask`, BERT's `input_mask`, Hugging Face's `attention_mask`.
_MASK_WORDS = ("mask",)
_NOT_PADDING_MASKS = ("causal",)


def detected_padding(declared: list[TensorInfo]) -> dict[str, DetectedPadding]:
    """The inputs to pad, with what the model says about them: its own layers (TensorInfo.padding),
    else its input names, in any format. An integer or bool [batch, length] input named like a mask
    is a padding mask; the integer inputs of the same shape beside it (token ids, segment ids) are
    padded with 0 to the same lengths, as a tokenizer pads them."""
    found = {i.name: i.padding for i in declared if i.padding is not None}
    masks = [
        i
        for i in declared
        if i.name not in found
        and _kind(i.dtype) in ("int", "bool")
        and i.shape is not None
        and len(i.shape) == 2
        and any(w in i.name.lower() for w in _MASK_WORDS)
        and not any(w in i.name.lower() for w in _NOT_PADDING_MASKS)
    ]
    for mask in masks:
        found[mask.name] = DetectedPadding(0, "its name: a padding mask (1 on real tokens)", mask=True)
    for info in declared:
        beside = next((m for m in masks if _same_layout(m.shape, info.shape)), None)
        if info.name not in found and beside is not None and _kind(info.dtype) == "int":
            found[info.name] = DetectedPadding(0, f"beside the padding mask '{beside.name}'")
    return found


def _same_layout(a: tuple | None, b: tuple | None) -> bool:
    return (
        a is not None
        and b is not None
        and len(a) == len(b)
        and all(x is None or y is None or x == y for x, y in zip(a, b, strict=True))
    )


def _fmt_names(info: TensorInfo) -> str:
    return info.name + "".join(f" (or {alias})" for alias in info.aliases)


def _kind(dtype: str) -> str:
    return "bool" if dtype == "bool" else "int" if "int" in dtype else "float"


def _resolve_one(
    info: TensorInfo,
    index: int | None,
    spec: InputSpec | None,
    batch_size: int,
    detected: DetectedPadding | None = None,
) -> ConcreteInput:
    key = f"inputs[{index}]"
    if spec and spec.dtype and spec.dtype != info.dtype:
        fed, takes = _kind(spec.dtype), _kind(info.dtype)
        what = f"{fed} values fed to a {takes} input" if fed != takes else "another width than the model's"
        raise ConfigError(
            f"config `{key}.dtype: {spec.dtype}` contradicts the model: its input '{info.name}' takes "
            f"{info.dtype} ({what}, which the exported model cannot take); write `dtype: {info.dtype}` "
            "or leave `dtype` out"
        )
    dtype = info.dtype
    if spec and spec.shape is not None:
        shape = tuple(spec.shape)
        if info.shape is not None:
            fits = len(shape) == len(info.shape) and all(
                d is None or d == s for d, s in zip(info.shape, shape, strict=True)
            )
            if not fits:
                raise ConfigError(
                    f"config shape {list(shape)} for input '{info.name}' does not fit the model's "
                    f"shape {_fmt_shape(info.shape)} (`{key}.shape`); write e.g. "
                    f"`shape: {_fitting_shape(info.shape, shape, batch_size)}`"
                )
    else:
        if info.shape is None:
            raise ConfigError(
                f"input '{info.name}' has an unknown rank; set its shape under `inputs:` in the config"
            )
        dims = list(info.shape)
        if dims and dims[0] is None:
            dims[0] = batch_size
        if any(d is None for d in dims):
            raise ConfigError(
                f"input '{info.name}' has unknown dimensions {_fmt_shape(info.shape)}; set a concrete "
                f"shape under `inputs:` in the config, e.g. - {{name: {info.name}, shape: [...]}}"
            )
        shape = tuple(int(d) for d in dims)
    kind = _kind(dtype)
    if spec and spec.range:
        low, high = spec.range
        _check_range(info, key, low, high)
    else:
        low, high = DEFAULT_RANGES[kind]
        if kind == "int" and info.vocabulary:
            high = min(high, info.vocabulary)  # token ids the model's table has
    padding = _padding(info, key, shape, spec.padding if spec else None, detected)
    return ConcreteInput(info.name, dtype, shape, float(low), float(high), padding)


def _padding(
    info: TensorInfo,
    key: str,
    shape: tuple[int, ...],
    configured: PaddingSpec | bool | None,
    detected: DetectedPadding | None,
) -> Padding | None:
    """The config's `padding` over what the model says (a mapping's unset keys keep the model's)."""
    if configured is False or (configured is None and detected is None):
        return None
    spec = configured if isinstance(configured, PaddingSpec) else PaddingSpec()
    values = {"value": spec.value, "side": spec.side, "min_len": spec.min_len, "mask": spec.mask}
    source = "config"
    if detected is not None:
        chosen = spec.model_fields_set if isinstance(configured, PaddingSpec) else set()
        values.update({k: getattr(detected, k) for k in ("value", "mask") if k not in chosen})
        source = detected.source if not chosen else f"{detected.source}; config: {', '.join(sorted(chosen))}"
    if len(shape) < 2:
        if configured is None:
            return None  # nothing to pad: no axis of positions
        raise ConfigError(
            f"config `{key}.padding` needs a [batch, length, ...] input, but '{info.name}' has shape "
            f"{list(shape)}; remove `padding` from it"
        )
    _check_padding_value(info, key, values["value"], values["mask"])
    return Padding(
        float(values["value"]), values["side"], min(values["min_len"], shape[1]), values["mask"], source
    )


def _check_padding_value(info: TensorInfo, key: str, value: float, mask: bool) -> None:
    kind = _kind(info.dtype)
    fits = True
    if kind == "bool":
        fits = value in (0, 1)
    elif kind == "int":
        limits = np.iinfo(info.dtype)
        fits = value == int(value) and limits.min <= value <= limits.max
        if fits and info.vocabulary and not mask and not 0 <= value < info.vocabulary:
            raise ConfigError(
                f"config `{key}.padding.value: {value:g}` is not a row of the Embedding that input "
                f"'{info.name}' indexes ({info.vocabulary} rows); write a padding id in 0..{info.vocabulary - 1}"
            )
    if not fits:
        raise ConfigError(
            f"config `{key}.padding.value: {value:g}` does not fit input '{info.name}' ({info.dtype}); "
            "write a value the input's dtype holds (0 for token ids)"
        )


def padding_lengths(shape: tuple[int, ...], min_len: int, sample: int, samples: int) -> list[int] | None:
    """Each row's length in sample batch `sample`, or None where the batch is not padded: the first of
    several batches keeps its full rows (the unpadded case), the others go from full length (row 0)
    down to `min_len` (last row; the next padded batch the other way round). A batch of one row takes
    the short and the middle length in turn."""
    if samples > 1 and sample == 0:
        return None
    batch, length = shape[0], shape[1]
    turn = sample - (1 if samples > 1 else 0)
    if batch > 1:
        lengths = [int(n) for n in np.linspace(length, min_len, batch).round()]
        return lengths[::-1] if turn % 2 else lengths  # the next batch starts with its shortest row
    return [(min_len, (length + min_len) // 2)[turn % 2]]


def apply_padding(array: np.ndarray, padding: Padding, lengths: list[int]) -> None:
    """Pad one sample batch in place: a mask gets 1 on real positions and `value` elsewhere, any other
    input `value` on the padded positions (every feature of a padded time step)."""
    length = array.shape[1]
    for row, real in enumerate(lengths):
        pad = slice(real, length) if padding.side == "right" else slice(0, length - real)
        if padding.mask:
            array[row] = 1
        array[row, pad] = padding.value


def _fitting_shape(declared: tuple[int | None, ...], given: tuple[int, ...], batch_size: int) -> list[int]:
    """The model's shape with its unknown sizes taken from what the user gave (else the batch size
    for the first, 1 for the rest)."""
    same_rank = len(declared) == len(given)
    return [
        d if d is not None else given[i] if same_rank else batch_size if i == 0 else 1
        for i, d in enumerate(declared)
    ]


def _check_range(info: TensorInfo, key: str, low: float, high: float) -> None:
    """A configured `range` must be one the input's dtype can hold (integers: whole numbers within
    the dtype; bool: within [0, 2]) and, for token ids, one the model's Embedding table has rows for."""
    dtype, write, why = info.dtype, None, ""
    if dtype == "bool":
        if low < 0 or high > 2:
            write = "[0, 2]"
    elif "int" in dtype:
        limits = np.iinfo(dtype)
        if low != int(low) or high != int(high):
            write = f"[{int(np.ceil(low))}, {int(np.floor(high))}]"
            why = "; integers are drawn from [low, high), with whole-number bounds"
        elif low < limits.min or high > int(limits.max) + 1:
            write = f"[{max(int(low), int(limits.min))}, {min(int(high), int(limits.max) + 1)}]"
            why = f"; {dtype} holds {limits.min}..{limits.max}"
        elif info.vocabulary and (low < 0 or high > info.vocabulary):
            raise ConfigError(
                f"config `{key}.range: [{low:g}, {high:g}]` goes past the vocabulary of the Embedding that "
                f"input '{info.name}' indexes ({info.vocabulary} rows: ids 0..{info.vocabulary - 1}); write "
                f"`range: [0, {info.vocabulary}]`"
            )
    elif max(abs(low), abs(high)) > float(np.finfo(dtype).max):
        largest = float(np.finfo(dtype).max)
        write, why = f"[{-largest:g}, {largest:g}]", f"; {dtype} holds values up to {largest:g}"
    if write:
        raise ConfigError(
            f"config `{key}.range: [{low:g}, {high:g}]` does not fit input '{info.name}' ({dtype}{why}); "
            f"write `range: {write}`"
        )


def generate(specs: list[ConcreteInput], seed: int, samples: int) -> dict[str, np.ndarray]:
    """One array per input with a leading axis of `samples` batches, drawn from one seeded generator."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for spec in specs:
        size = (samples, *spec.shape)
        if spec.dtype == "bool":
            arrays[spec.name] = rng.integers(0, 2, size=size).astype(bool)
        elif "int" in spec.dtype:
            arrays[spec.name] = rng.integers(int(spec.low), int(spec.high), size=size).astype(spec.dtype)
        else:
            arrays[spec.name] = rng.uniform(spec.low, spec.high, size=size).astype(spec.dtype)
    # Padded after every draw, so the random values of the unpadded batches stay the same.
    for spec in specs:
        if spec.padding is None:
            continue
        for sample in range(samples):
            lengths = padding_lengths(spec.shape, spec.padding.min_len, sample, samples)
            if lengths is not None:
                apply_padding(arrays[spec.name][sample], spec.padding, lengths)
    return arrays


def run_samples(run, feeds: dict[str, np.ndarray], output_names: list[str]) -> dict[str, np.ndarray]:
    """Run `run` on one batch at a time and stack each output along a leading samples axis."""
    samples = len(next(iter(feeds.values()))) if feeds else 1
    per_sample = [run({name: value[i] for name, value in feeds.items()}) for i in range(samples)]
    return {name: np.stack([np.asarray(r[name]) for r in per_sample]) for name in output_names}


def _fmt_shape(shape: tuple | None) -> str:
    if shape is None:
        return "[?]"
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def second_shape_candidates(
    declared: list[TensorInfo], specs: list[ConcreteInput]
) -> list[dict[str, tuple[int, ...]]]:
    """Shapes that give every dimension the model leaves unknown a second value, best first.

    The batch grows by one; every other unknown dimension shrinks by about a quarter (shorter is what
    position embeddings and fixed-size caches accept). The first candidate gives each dimension a value
    of its own, so that a size computed in the graph can be traced back to the one input dimension it
    comes from; the second moves dimensions of equal size together (a token sequence and its mask);
    the last moves only the batch, for models whose unknown dimensions are fixed after all.
    """
    dynamic = [
        (spec.name, axis, size)
        for info, spec in zip(declared, specs, strict=True)
        if info.shape is not None and len(info.shape) == len(spec.shape)
        for axis, (known, size) in enumerate(zip(info.shape, spec.shape, strict=True))
        if known is None
    ]
    if not dynamic:
        return []
    used = {size for spec in specs for size in spec.shape}
    batch_only = {(n, a): s + 1 for n, a, s in dynamic if a == 0}
    used |= set(batch_only.values())

    def fresh(size: int) -> int:
        new = max(1, size - max(1, size // 4)) if size > 1 else 2
        while new in used:
            new = new - 1 if new > 1 else max(used) + 1
        used.add(new)
        return new

    others = [(n, a, s) for n, a, s in dynamic if a != 0]
    distinct = {**batch_only, **{(n, a): fresh(s) for n, a, s in others}}
    by_size: dict[int, int] = {}
    tied = {**batch_only, **{(n, a): by_size.setdefault(s, fresh(s)) for n, a, s in others}}

    def shapes(new: dict[tuple[str, int], int]) -> dict[str, tuple[int, ...]]:
        return {
            spec.name: tuple(new.get((spec.name, a), s) for a, s in enumerate(spec.shape)) for spec in specs
        }

    candidates = [shapes(distinct), shapes(tied), shapes(batch_only)]
    return [c for i, c in enumerate(candidates) if c not in candidates[:i]]


def resized(sample: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """`sample`'s arrays cut or extended (by wrapping around) to `shapes`: values stay the model's kind
    (valid token ids, the configured range) at any size."""
    result = {}
    for name, array in sample.items():
        for axis, size in enumerate(shapes[name]):
            if size != array.shape[axis]:
                array = np.take(array, np.arange(size) % array.shape[axis], axis=axis)
        result[name] = np.ascontiguousarray(array)
    return result
