"""Zoo files: a list of models to convert, each with its own config.

    defaults:            # optional; keys every entry starts from (the same keys as a model config)
      samples: 2
    models:
      - config: ../models/mobilenet_v2.yaml      # a model config file, relative to the zoo file
      - id: gru-b3-t7                            # optional; names the entry's output directory
        model: family.gru                        # inline keys, the same as a model config
        inputs: [{name: sequence, shape: [3, 7, 6]}]
      - model: keras.applications.NASNetLarge
        disabled: "331x331 minimum input; too slow for CI"   # listed as skipped, with the reason
      - model: keras.applications.EfficientNetV2L
        memory: 9G    # what its workers need at their peak (default: the last run's peak, else an estimate)

Top-level keys that start with `x-` are ignored: they hold YAML anchors the entries refer to
(`x-sgd: &sgd {class_name: SGD}`, then `compile: {optimizer: *sgd, loss: mse}`).

`include: [other.yaml]` appends another zoo file's entries (with that file's own `defaults`), so a
zoo can be built from others; ids must stay unique across all of them.

Batch settings may sit beside `defaults` (`tf2torch batch` reads them):

    max_rss_mb: 12000        # replace a worker process once it holds more memory than this after a model
    regression_factor: 10    # with --baseline: an error that grew more than this many times is a regression

An entry's config is the defaults (pipeline/config.py) < the zoo's `defaults` < its `config` file < its inline
keys. Every entry is validated when the zoo is loaded, disabled ones too, so a typo fails at once.

Every file a zoo names (config files, includes, models, converters, custom_objects,
tflite_custom_ops) must lie inside its base directory, after symbolic links are followed: the zoo
file's directory, or `base_dir:` (relative to the zoo file). A zoo from elsewhere cannot make a batch read `/home/you/.ssh` or
`../../secret.keras` unless it says `allow_paths_outside_base: true`. An included zoo's base must lie
inside the including zoo's base, and only the top zoo file can allow outside paths.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.batching.memory import parse_mb
from pipeline.config import USER_CODE_KEYS, ModelConfig, file_layer, load_config, read_yaml
from pipeline.errors import ConfigError, UsageError
from pipeline.formats import is_zoo_id

_ENTRY_KEYS = {"id", "config", "disabled", "memory"}
_TOP_LEVEL_KEYS = {
    "defaults",
    "models",
    "include",
    "max_rss_mb",
    "regression_factor",
    "base_dir",
    "allow_paths_outside_base",
}
_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]*$")  # ids name output directories
DEFAULT_REGRESSION_FACTOR = 10.0


@dataclass(frozen=True)
class ZooEntry:
    id: str
    config: ModelConfig
    disabled: str | None
    memory_mb: float | None = None  # `memory: 12G`: what its workers need, overriding the measured peak


@dataclass(frozen=True)
class Zoo:
    path: Path
    entries: list[ZooEntry]
    max_rss_mb: float | None
    regression_factor: float


def load_zoo(path: Path) -> list[ZooEntry]:
    return read_zoo(path).entries


@dataclass(frozen=True)
class _Bounds:
    """Where a zoo file's paths may point: inside `base`, unless `anywhere`."""

    base: Path
    anywhere: bool

    def check(self, where: str, what: str, target: Path) -> None:
        if self.anywhere or target.resolve().is_relative_to(self.base):
            return
        raise ConfigError(
            f"{where}: {what} {target} lies outside the zoo's base directory {self.base}; move it inside, "
            "set `base_dir:` to a directory that holds it, or allow it with `allow_paths_outside_base: true`"
        )


def read_zoo(path: Path, _including: tuple[Path, ...] = (), _outer: _Bounds | None = None) -> Zoo:
    data = read_yaml(path)
    # `x-...` keys hold YAML anchors the entries refer to (`optimizer: *sgd`), as in compose files.
    unknown = sorted(k for k in set(data) - _TOP_LEVEL_KEYS if not str(k).startswith("x-"))
    if unknown:
        raise ConfigError(
            f"{path}: unknown top-level key(s) {unknown}; a zoo file has {', '.join(sorted(_TOP_LEVEL_KEYS))}"
        )
    bounds = _bounds(path, data, _outer)
    settings = {key: data.get(key) for key in ("max_rss_mb", "regression_factor")}
    for key, value in settings.items():
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float) or value <= 0
        ):
            raise ConfigError(f"{path}: `{key}` must be a positive number, got {value!r}")
    models = data.get("models")
    if not isinstance(models, list) or not models:
        raise ConfigError(f"{path}: `models` must be a non-empty list of entries")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise ConfigError(f"{path}: `defaults` must be a mapping of config keys")
    entries: list[ZooEntry] = []
    for index, raw in enumerate(models):
        where = f"{path}: models[{index}]"
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(raw).__name__}")
        entries.append(_entry(path, where, raw, defaults, bounds))
    entries += _included(path, data.get("include"), _including, bounds)
    seen: dict[str, str] = {}
    for entry in entries:
        if entry.id in seen:
            raise ConfigError(f"{path}: two entries have the id '{entry.id}'; give one of them another `id`")
        seen[entry.id] = entry.id
    factor = settings["regression_factor"]
    return Zoo(
        path,
        entries,
        settings["max_rss_mb"],
        float(factor) if factor is not None else DEFAULT_REGRESSION_FACTOR,
    )


def _bounds(path: Path, data: dict[str, Any], outer: _Bounds | None) -> _Bounds:
    base_dir = data.get("base_dir")
    if base_dir is not None and not isinstance(base_dir, str):
        raise ConfigError(f"{path}: `base_dir` must be a directory path (relative to the zoo file)")
    allow = data.get("allow_paths_outside_base", False)
    if not isinstance(allow, bool):
        raise ConfigError(f"{path}: `allow_paths_outside_base` must be true or false")
    if outer is not None and allow and not outer.anywhere:
        raise ConfigError(
            f"{path}: an included zoo cannot set `allow_paths_outside_base`; set it in the top zoo file"
        )
    base = (path.parent / base_dir).resolve() if base_dir else path.parent.resolve()
    if outer is not None:
        outer.check(str(path), "base_dir", base)
    return _Bounds(base, allow or (outer is not None and outer.anywhere))


def _included(path: Path, include: Any, including: tuple[Path, ...], bounds: _Bounds) -> list[ZooEntry]:
    if include is None:
        return []
    if not isinstance(include, list) or not all(isinstance(i, str) for i in include):
        raise ConfigError(f"{path}: `include` must be a list of zoo file paths (relative to this file)")
    entries: list[ZooEntry] = []
    for name in include:
        other = (path.parent / name).resolve()
        if other in including or other == path.resolve():
            raise ConfigError(f"{path}: `include` of {name} forms a cycle")
        bounds.check(str(path), "included zoo file", other)
        if not other.is_file():
            raise ConfigError(f"{path}: included zoo file {name} not found (looked for {other})")
        entries += read_zoo(other, (*including, path.resolve()), bounds).entries
    return entries


def _entry(
    path: Path, where: str, raw: dict[str, Any], defaults: dict[str, Any], bounds: _Bounds
) -> ZooEntry:
    inline = {k: v for k, v in raw.items() if k not in _ENTRY_KEYS}
    config_path = (path.parent / raw["config"]) if raw.get("config") else None
    if config_path is not None:
        bounds.check(where, "config file", config_path)
    disabled = raw.get("disabled")
    if disabled is not None and not (isinstance(disabled, str) and disabled.strip()):
        raise ConfigError(f"{where}: `disabled` must be a reason (a non-empty string)")
    config = load_config(
        config_path,
        before_file=(file_layer(path, dict(defaults), f"{path}: defaults"),),
        after_file=(file_layer(path, inline, where),),
    )
    if config.model is None:
        raise ConfigError(f"{where}: no `model` (inline or in its config file)")
    if not is_zoo_id(config.model):
        bounds.check(where, "model", Path(config.model))
    for key in USER_CODE_KEYS:
        for name in getattr(config, key):
            bounds.check(where, f"{key} file", Path(name))
    entry_id = str(raw.get("id") or _slug(config.model))
    if not _ID_PATTERN.match(entry_id):
        raise ConfigError(
            f"{where}: id '{entry_id}' must start with a letter or digit and use only letters, digits and . _ @ + -"
        )
    memory_mb = None
    if raw.get("memory") is not None:
        try:
            memory_mb = parse_mb(raw["memory"], "`memory`")
        except UsageError as exc:
            raise ConfigError(f"{where}: {exc.message}") from None
    return ZooEntry(entry_id, config, disabled, memory_mb)


def _slug(model: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(model.rstrip("/")).name) or "model"
