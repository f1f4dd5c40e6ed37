"""The training configuration a Keras model file stores: `compile_config` in a .keras archive's
config.json (Keras 3), `training_config` on a legacy .h5 file. Read as plain JSON: nothing is built
and no framework is imported."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

from pipeline.errors import UsageError

NOT_COMPILED = (
    "{model} has no training configuration: save the model after model.compile(optimizer=..., "
    "loss=...) to carry the training setup over, or give one in the config "
    "(compile: {{optimizer: adam, loss: mse}})"
)


def read(model: str, fmt: str, given: dict[str, Any] | None = None) -> dict[str, Any]:
    """{"optimizer": {"class_name", "config"}, "loss": {"class_name", "config"} | str | list | dict,
    "loss_weights", "metrics": [...]}. `given` (the config's `compile`) wins over the file's."""
    if given:
        return {
            "optimizer": _named(given["optimizer"]),
            "loss": given["loss"],
            "loss_weights": given.get("loss_weights"),
            "metrics": _flat_metrics(given.get("metrics")),
        }
    path = Path(model)
    if fmt == "keras":
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json")).get("compile_config")
        if not config or not config.get("optimizer") or not config.get("loss"):
            raise UsageError(NOT_COMPILED.format(model=model))
        return {
            "optimizer": _named(config["optimizer"]),
            "loss": config["loss"],
            "loss_weights": config.get("loss_weights"),
            "metrics": _flat_metrics(config.get("metrics")),
        }
    if fmt == "h5":
        import h5py

        with h5py.File(path, "r") as fh:
            raw = fh.attrs.get("training_config")
        if raw is None:
            raise UsageError(NOT_COMPILED.format(model=model))
        config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        optimizer = _named(config["optimizer_config"])
        optimizer["class_name"] = optimizer["class_name"].rpartition(">")[2]  # "Custom>RMSprop"
        return {
            "optimizer": optimizer,
            "loss": config.get("loss"),
            "loss_weights": config.get("loss_weights"),
            "metrics": _flat_metrics(config.get("metrics")),
        }
    raise UsageError(
        f"--training needs a Keras model (a .keras or .h5 file saved after compile(), or a zoo id with "
        f"`compile:` in its config); {model} is a {fmt} model"
    )


def _named(entry: Any) -> dict[str, Any]:
    if isinstance(entry, str):  # compile(optimizer="adam"): Keras's defaults for that optimizer
        return {"class_name": entry, "config": {}}
    return {"class_name": entry["class_name"], "config": dict(entry.get("config") or {})}


def _flat_metrics(metrics: Any) -> list[Any]:
    flat: list[Any] = []
    for item in metrics or []:
        if isinstance(item, list):
            flat += _flat_metrics(item)
        elif isinstance(item, dict) and item.get("class_name") == "MeanMetricWrapper":
            flat.append(item["config"].get("fn") or item["config"].get("name"))
        elif isinstance(item, dict):
            flat.append(item.get("config", {}).get("name") or item.get("class_name"))
        else:
            flat.append(item)
    return flat
