"""Models of a third-party Keras 2 model library (keras-cv-attention-models, configs/zoos/kecam.yaml),
as its users save them: a SavedModel, and a .h5 that only loads where the library's layers are
registered (the Keras 2 TF worker). CI converts two entries end to end; the nightly zoo batch
converts the whole file. The zoo and docs/coverage.md together account for every model module of
the installed library."""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import pytest
from cli_runner import REPO, read_report, run_zoo

from pipeline.batching.zoo_file import load_zoo

# found, not imported: importing the library imports TensorFlow, which the pytest process never does
if importlib.util.find_spec("keras_cv_attention_models") is None:
    pytest.skip("make setup installs keras-cv-attention-models", allow_module_level=True)

ZOO = REPO / "configs" / "zoos" / "kecam.yaml"
SAMPLED = ("mobilevit_xxs_h5", "fasternet_t0")
COVERAGE = REPO / "docs" / "coverage.md"


def _library_model_modules() -> set[str]:
    """The library's own list: each module that defines a model constructor (a capitalised function
    with a `pretrained` argument), read from its source without importing TensorFlow."""
    root = Path(importlib.util.find_spec("keras_cv_attention_models").origin).parent
    found = set()
    for path in root.rglob("*.py"):
        if path.parent == root or "pytorch_backend" in path.parts:
            continue
        for node in ast.parse(path.read_text()).body:
            is_constructor = isinstance(node, ast.FunctionDef) and node.name[:1].isupper()
            if is_constructor and "pretrained" in [a.arg for a in node.args.args]:
                found.add(path.relative_to(root).parts[0])
    return found


def _documented_left() -> set[str]:
    text = COVERAGE.read_text()
    table = text[text.index("<!-- kecam-left:start -->") : text.index("<!-- kecam-left:end -->")]
    return set(re.findall(r"^\| `([a-z0-9_]+)` \|", table, flags=re.M))


def test_zoo_and_docs_account_for_every_model_module_of_the_library():
    library = _library_model_modules()
    zoo = {e.config.model.split(".")[1] for e in load_zoo(ZOO)}
    left = _documented_left()
    print(
        f"kecam model modules: {len(zoo & library)} in the zoo / {len(library)}, {len(left)} left with reasons"
    )
    assert zoo <= library, f"zoo modules the library does not have: {sorted(zoo - library)}"
    assert not zoo & left, f"in the zoo and listed as left: {sorted(zoo & left)}"
    assert library == zoo | left, (
        f"not in the zoo nor in docs/coverage.md: {sorted(library - zoo - left)}; "
        f"listed but not in the library: {sorted(left - library)}"
    )


@pytest.fixture(scope="module")
def zoo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("kecam")
    sample = tmp_path_factory.mktemp("kecam_zoo") / "kecam-sample.yaml"
    entries = {e.id: e for e in load_zoo(ZOO)}
    lines = ["defaults:", "  samples: 2", "  torch_export: true", "models:"]
    lines += [f"  - {{id: {i}, model: {entries[i].config.model}}}" for i in SAMPLED]
    sample.write_text("\n".join(lines) + "\n")
    return out, run_zoo(sample, out)


@pytest.mark.slow
@pytest.mark.parametrize("entry_id", SAMPLED)
def test_library_model_converts_with_model_py(entry_id, zoo_run):
    out, rows = zoo_run
    row = rows[entry_id]
    assert row["status"] == "pass", f"{row['stage']}: {row['message']}"
    report = read_report(out / entry_id)
    assert report["format"] == "zoo"
    assert (out / entry_id / "model.py").is_file()
    # the saved form the id names, kept beside the run
    saved = "source.h5" if entry_id.endswith("_h5") else "source_saved_model"
    assert (out / entry_id / saved).exists()
