"""Legacy Keras 2 .h5 files run in a TF worker whose `tf.keras` is tf_keras (TF_USE_LEGACY_KERAS):
a custom layer written against `tf.keras`, as Keras 2 code is, is a tf_keras layer there, and a
Keras 2 model library's registered layers load. In a worker where `tf.keras` is Keras 3 the same
file's class would be a Keras 3 layer, which tf_keras cannot load."""

from __future__ import annotations

import numpy as np
from cli_runner import read_report, run_command

from pipeline import artifacts

LAYER_FILE = """import tensorflow as tf


class Scale(tf.keras.layers.Layer):
    def __init__(self, factor=1.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def build(self, shape):
        self.w = self.add_weight(name="w", shape=(shape[-1],), initializer="ones")

    def call(self, x):
        return x * self.w * self.factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}
"""


def test_a_custom_layer_written_for_tf_keras_loads_from_h5(models, tmp_path):
    (tmp_path / "layers.py").write_text(LAYER_FILE)
    config = tmp_path / "config.yaml"
    config.write_text("custom_objects: [layers.py]\n")
    out = tmp_path / "run"
    proc = run_command("convert", models / "custom_layer.h5", "--config", config, "--out", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = read_report(out)
    assert report["status"] == "pass"
    assert (out / artifacts.NATIVE_CODE).is_file()
    outputs = artifacts.load_arrays(out / artifacts.OUTPUTS["tf"])
    assert all(np.abs(a).max() > 0 for a in outputs.values())
    # every stage reports the worker's memory: the load began from a worker that already held TF
    load = next(s for s in report["stages"] if s["name"] == "load")
    assert 0 < load["memory_mb"]["start_rss"] <= load["memory_mb"]["peak_rss"]
