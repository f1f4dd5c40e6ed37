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

An entry's config is configs/defaults.yaml < the zoo's `defaults` < its `config` file < its inline
keys. Every entry is validated when the zoo is loaded, disabled ones too, so a typo fails at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import ModelConfig, file_layer, load_config, read_yaml
from pipeline.errors import ConfigError

_ENTRY_KEYS = {"id", "config", "disabled"}


@dataclass(frozen=True)
class ZooEntry:
    id: str
    config: ModelConfig
    disabled: str | None


def load_zoo(path: Path) -> list[ZooEntry]:
    data = read_yaml(path)
    unknown = sorted(set(data) - {"defaults", "models"})
    if unknown:
        raise ConfigError(
            f"{path}: unknown top-level key(s) {unknown}; a zoo file has `defaults` and `models`"
        )
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
        entries.append(_entry(path, where, raw, defaults))
    seen: dict[str, str] = {}
    for entry in entries:
        if entry.id in seen:
            raise ConfigError(f"{path}: two entries have the id '{entry.id}'; give one of them another `id`")
        seen[entry.id] = entry.id
    return entries


def _entry(path: Path, where: str, raw: dict[str, Any], defaults: dict[str, Any]) -> ZooEntry:
    inline = {k: v for k, v in raw.items() if k not in _ENTRY_KEYS}
    config_path = (path.parent / raw["config"]) if raw.get("config") else None
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
    return ZooEntry(str(raw.get("id") or _slug(config.model)), config, disabled)


def _slug(model: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(model.rstrip("/")).name) or "model"
