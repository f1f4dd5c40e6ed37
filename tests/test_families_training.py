"""Training parity on models the training tests were not written for: every trainable model of the
families zoo (configs/zoos/families-training.yaml), compiled with a loss that fits its output, trained
5 steps with plain SGD and with Adam in TensorFlow and with its train.py, compared; each from Keras's
own initial weights too (a never-fitted model: every parameter tied by identity, whatever its value).

One `tf2torch batch` run (warm workers); each entry is its own test case.
"""

from __future__ import annotations

import json

import pytest
from cli_runner import REPO, read_report, run_zoo

from pipeline.batching.zoo_file import load_zoo

ZOO = REPO / "configs" / "zoos" / "families-training.yaml"
ENTRIES = load_zoo(ZOO)


@pytest.fixture(scope="module")
def zoo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("families-training")
    return out, run_zoo(ZOO, out, "--prune")


def test_the_sweep_covers_every_trainable_family_with_both_optimizers():
    from pipeline.tf_worker.families import BUILDERS

    # The .tflite families have no Keras model to train; every other family is in the sweep with SGD
    # and with Adam. Every keras.applications architecture the families zoo converts is in it with one
    # of the two, and with both in the nightly applications-training.yaml.
    keras_families = {name for name in BUILDERS if not name.endswith("_tflite")}
    zoos = REPO / "configs" / "zoos"
    architectures = {e.config.model for e in load_zoo(zoos / "keras-applications-core.yaml")}
    swept = {e.config.model for e in ENTRIES}
    assert keras_families <= swept and architectures <= swept, (keras_families | architectures) - swept
    # Every trainable model also trains from Keras's own initial weights (a fresh model), but the
    # EfficientNetV2s (families-training.yaml says why).
    fresh = {e.config.model for e in ENTRIES if e.config.zoo_weights == "initial"}
    wanted = (keras_families | architectures) - NOT_FRESH
    assert wanted <= fresh and not fresh & NOT_FRESH, wanted ^ (fresh & (keras_families | architectures))
    nightly = load_zoo(zoos / "applications-training.yaml")
    for entries, models in ((ENTRIES, swept - architectures), (nightly, architectures)):
        optimizers = {}
        for entry in entries:
            optimizers.setdefault(entry.config.model, set()).add(entry.config.compile.optimizer["class_name"])
        assert {m: optimizers.get(m) for m in models} == {m: {"SGD", "Adam"} for m in models}


@pytest.mark.slow
@pytest.mark.parametrize("entry", ENTRIES, ids=[e.id for e in ENTRIES])
def test_family_trains_as_keras_does(entry, zoo_run):
    out, rows = zoo_run
    row = rows[entry.id]
    assert row["status"] == "pass", f"{row['stage']}: {row['message']}"
    stages = {s["name"]: s for s in read_report(out / entry.id)["stages"]}
    # Every parameter tied to its Keras variable on the marked export (not by value).
    assert stages["native"]["details"]["ties"].startswith("by identity"), stages["native"]["details"]["ties"]
    details = stages["training"]["details"]
    assert len(details["torch_losses"]) == 5
    # Both sides in float64: every model of the sweep widens (pipeline/tf_worker/keras_precision.py).
    assert details["precision"] == "float64"
    # Every trainable TF variable was compared, its update and its first-step gradient (the stage
    # fails when one has no torch parameter; a GRU's one bias is torch's two).
    trainable = sum(
        w["trainable"]
        for layer in json.loads((out / entry.id / "tf_layers.json").read_text())["layers"]
        for w in layer["weights"]
    )
    assert details["compared_gradients"] >= trainable > 0
    assert details["not_compared"] == []
    # What train.py still cannot carry over, pinned per model: an RNN's own dropout (torch's LSTM/GRU
    # have none), and a Keras Dropout the native pass could not place by value (EfficientNetV2L's
    # drop-connect in 5 of 73 blocks). MobileNetV3's head Dropout is placed: it is named by its place
    # among the model's Dropouts, whatever the rebuilt model numbers it. A MultiHeadAttention's rate-0
    # Dropout is nothing to report.
    expected = TODOS.get(entry.config.model)
    if expected is None:
        assert details["todos"] == []
    else:
        assert len(details["todos"]) == 1 and details["todos"][0].startswith(expected), details["todos"]


NOT_FRESH = {"keras.applications.EfficientNetV2B0", "keras.applications.EfficientNetV2L"}

TODOS = {
    "family.bidirectional_rnn_dropout": "Keras RNN dropout",
    "keras.applications.EfficientNetV2L": "Keras dropout",
}
