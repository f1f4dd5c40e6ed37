"""Hostile `.keras` archives, refused before Keras opens them (pipeline/keras_archive.py): a class
from a module outside Keras, a member outside the archive's root, a zip bomb. Each archive is a
real model's archive with one thing changed."""

from __future__ import annotations

import json
import time
import tracemalloc
import zipfile
from pathlib import Path

import pytest
from cli_runner import read_report, run_command

from pipeline import keras_archive
from pipeline.errors import ModelFileError


def rewrite(source: Path, target: Path, config=None, extra: dict[str, bytes] | None = None) -> Path:
    """`source`'s archive with config.json passed through `config` and `extra` members added."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as new:
        for member in old.infolist():
            data = old.read(member)
            if member.filename == "config.json" and config is not None:
                data = json.dumps(config(json.loads(data))).encode()
            new.writestr(member.filename, data)
        for name, data in (extra or {}).items():
            new.writestr(zipfile.ZipInfo(name), data)
    return target


def first_layer_from(module: str, class_name: str):
    def edit(config):
        layer = config["config"]["layers"][-1]
        layer["module"], layer["class_name"] = module, class_name
        return config

    return edit


def test_a_class_from_a_module_outside_keras_is_refused_as_unsafe(models, tmp_path):
    model = rewrite(models / "localize.keras", tmp_path / "os.keras", first_layer_from("os", "system"))
    proc = run_command("convert", model, "--out", tmp_path / "run")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "'system' from the module 'os'" in proc.stdout and "refused as unsafe" in proc.stdout
    # Not the message for a missing custom layer, which would invite the user to supply the code.
    assert "put the class in a Python file" not in proc.stdout
    assert read_report(tmp_path / "run")["stages"][0]["name"] == "load"


def test_a_custom_class_listed_in_custom_objects_still_loads(models, tmp_path):
    # Keras writes a registered custom class without a module: Keras resolves it from its registry
    # and custom_objects only, so it passes. Named from a module of the user's, it passes when the
    # user's custom_objects define it, and is refused otherwise.
    keras_archive.inspect(models / "custom_layer.keras")
    hostile = rewrite(
        models / "custom_layer.keras", tmp_path / "m.keras", first_layer_from("my_layers", "Scale")
    )
    keras_archive.inspect(hostile, frozenset({"Scale"}))
    with pytest.raises(ModelFileError, match="'Scale' from the module 'my_layers'"):
        keras_archive.inspect(hostile)


@pytest.mark.parametrize("name", ["../escape.txt", "/etc/cron.d/x", "weights/../../x", "C:\\x.txt"])
def test_a_member_outside_the_archive_root_is_refused(models, tmp_path, name):
    model = rewrite(models / "localize.keras", tmp_path / "evil.keras", extra={name: b"x"})
    with pytest.raises(ModelFileError, match="lies outside the archive's root"):
        keras_archive.inspect(model)


def test_the_traversal_is_refused_end_to_end(models, tmp_path):
    model = rewrite(models / "localize.keras", tmp_path / "evil.keras", extra={"../escape.txt": b"x"})
    proc = run_command("convert", model, "--out", tmp_path / "run")
    assert proc.returncode == 2 and "lies outside the archive's root" in proc.stdout, proc.stdout
    assert not (tmp_path / "escape.txt").exists()


@pytest.fixture(scope="module")
def bomb(models, tmp_path_factory) -> Path:
    """localize.keras plus a 3 GiB zero-filled member (about 3 MB compressed), written in chunks."""
    target = tmp_path_factory.mktemp("bomb") / "bomb.keras"
    rewrite(models / "localize.keras", target)
    chunk = bytes(64 * 2**20)
    with (
        zipfile.ZipFile(target, "a", zipfile.ZIP_DEFLATED, compresslevel=1) as archive,
        archive.open("assets/zeros.bin", "w", force_zip64=True) as member,
    ):
        for _ in range(48):
            member.write(chunk)
    return target


def test_a_zip_bomb_is_refused_in_under_a_second_and_100_mb(bomb):
    assert bomb.stat().st_size < 50 * 2**20
    tracemalloc.start()
    started = time.perf_counter()
    with pytest.raises(ModelFileError, match=r"declares 3\.0 GiB .* refused as a zip bomb"):
        keras_archive.inspect(bomb)
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert seconds < 1.0 and peak < 100 * 2**20, (seconds, peak)


def test_the_zip_bomb_is_refused_end_to_end(bomb, tmp_path):
    proc = run_command("convert", bomb, "--out", tmp_path / "run")
    assert proc.returncode == 2 and "refused as a zip bomb" in proc.stdout, proc.stdout + proc.stderr
