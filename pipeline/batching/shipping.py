"""Moving a model's files between the batch's driver and a slot on another machine, as tar archives
(Ray carries them in its object store): no file system need be shared.

Out: the files a model's config names (the model file or SavedModel directory, converters, custom
objects, custom TFLite ops), unpacked in the slot's scratch directory with the config pointed at them.
Back: the model's run directory, published by the driver into OUT/<id> exactly as a local run is
(orchestrator/publish.py: a failed run never replaces a passing one).
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

from pipeline import artifacts
from pipeline.batching.task import Task
from pipeline.config import USER_CODE_KEYS
from pipeline.orchestrator.publish import StagedRun
from pipeline.records import Status


def pack_dir(directory: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(directory, arcname=".")
    return buffer.getvalue()


def unpack(data: bytes, destination: Path) -> None:
    destination.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        tar.extractall(destination, filter="data")  # no absolute paths, links out or devices


MANIFEST = "manifest.json"  # config key -> the file's path in the archive


def pack_inputs(task: Task) -> bytes | None:
    """The files `task`'s config names, one folder per file (names may repeat), and a manifest of
    which config key each one is; None if it names none (a zoo id is built in the worker)."""
    files = _named_files(task.config)
    if not files:
        return None
    manifest = {key: f"{index}/{path.name}" for index, (key, path) in enumerate(files.items())}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for key, path in files.items():
            tar.add(path, arcname=manifest[key])
        listing = json.dumps(manifest).encode()
        entry = tarfile.TarInfo(MANIFEST)
        entry.size = len(listing)
        tar.addfile(entry, io.BytesIO(listing))
    return buffer.getvalue()


def unpack_inputs(task: Task, data: bytes, scratch: Path) -> Task:
    """`task` with its config pointing at its files unpacked under `scratch`. Reads the manifest, not
    the driver's paths: those need not exist on the slot's machine."""
    unpack(data, scratch)
    moved = {key: str(scratch / name) for key, name in json.loads((scratch / MANIFEST).read_text()).items()}
    config = dict(task.config)
    if "model" in moved:
        config["model"] = moved["model"]
    for key in USER_CODE_KEYS:
        if isinstance(config.get(key), list):
            config[key] = [moved.get(f"{key}:{i}", f) for i, f in enumerate(config[key])]
    return Task(**{**task.__dict__, "config": config})


def _named_files(config: dict[str, Any]) -> dict[str, Path]:
    """The config's file references that exist here, by config key (`custom_objects:0` for a list's
    first file), in a fixed order."""
    files: dict[str, Path] = {}
    model = config.get("model")
    if isinstance(model, str) and Path(model).exists():
        files["model"] = Path(model).resolve()
    for key in USER_CODE_KEYS:
        for index, name in enumerate(config.get(key) or []):
            if isinstance(name, str) and Path(name).is_file():
                files[f"{key}:{index}"] = Path(name).resolve()
    return files


def publish_shipped(task: Task, row: dict[str, Any], archive: bytes) -> dict[str, Any]:
    """Publish a run directory that came back from a slot into the task's destination; return the row
    with the paths of this machine."""
    destination = Path(task.out_dir)
    passed = row["status"] == Status.PASS
    with StagedRun(destination, "batch") as staged:
        unpack(archive, staged.path)
        final = staged.final_path(passed)
        report_path = staged.path / artifacts.REPORT_JSON
        if report_path.is_file():
            report = json.loads(report_path.read_text())
            report["out_dir"], report["model"] = str(final), task.model
            report.setdefault("config", {})["model"] = task.model
            if final != destination:
                report["kept_passing_run"] = str(destination)
            artifacts.save_json(report_path, report)
        staged.publish(passed)
    return {**row, "out_dir": str(final), "model": task.model}
