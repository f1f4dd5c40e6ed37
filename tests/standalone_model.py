"""Runs model.py files in a fresh interpreter in which onnx2torch, onnx, tensorflow, keras and this
package cannot be imported: each run's model.safetensors is loaded strictly and its outputs are
compared with TF's at every recorded sample. A run whose weights were pruned (`batch --prune`) is
built and run with its initial weights, and only its output shapes are compared. Several runs share
one interpreter (torch imports once).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

_SCRIPT = """
import importlib.abc, importlib.util, json, os, sys
BLOCKED = ("onnx2torch", "onnx", "onnxruntime", "tensorflow", "keras", "keras_hub", "tf2onnx", "pipeline")
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked in this test")
sys.meta_path.insert(0, Block())
import numpy as np, torch
from safetensors.torch import load_file
results = {}
for i, (run, names) in enumerate(json.loads(sys.argv[1])):
    spec = importlib.util.spec_from_file_location(f"model_{i}", run + "/model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.ConvertedModel()
    weighted = os.path.exists(run + "/model.safetensors")
    if weighted:
        model.load_state_dict(load_file(run + "/model.safetensors"), strict=True)
    model.eval()
    inputs = np.load(run + "/inputs.npz")
    expected = np.load(run + "/tf_outputs.npz")
    worst = 0.0
    for s in range(len(inputs[names[0]])):
        with torch.no_grad():
            got = model(*[torch.from_numpy(inputs[n][s]) for n in names])
        got = got if isinstance(got, (tuple, list)) else (got,)
        assert len(got) == len(expected.files), (run, len(got))
        for key, value in zip(expected.files, got):
            assert tuple(value.shape) == expected[key][s].shape, (run, key, tuple(value.shape))
            if weighted:
                ok = np.allclose(value.numpy(), expected[key][s], atol=1e-5, rtol=1e-4)
                worst = max(worst, float(np.abs(value.numpy() - expected[key][s]).max()))
                assert ok, (run, key, worst)
    results[run] = worst if weighted else None
    del model
blocked = [m for m in sys.modules if m.split(".")[0] in BLOCKED]
print(json.dumps({"worst": results, "imported_blocked": blocked}))
"""


def run_standalone(runs: list[tuple[Path, list[str]]]) -> dict:
    """`runs`: (run directory, input names in forward's order). Returns each run's worst error against
    TF and the blocked modules that got imported (none, or the check failed)."""
    arg = json.dumps([[str(out), names] for out, names in runs])
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT, arg], capture_output=True, text=True, timeout=300 + 30 * len(runs)
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def input_names(report: dict) -> list[str]:
    return [i["name"] for i in report["inputs"]]
