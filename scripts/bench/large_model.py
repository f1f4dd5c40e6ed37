"""A model over protobuf's 2 GB limit, converted end to end: figures, not a test (`make bench-large`).

    .venv/bin/python scripts/bench/large_model.py [--layers 10] [--width 8192] [--keep DIR]

Builds a Keras MLP of `layers` Dense(width) layers (10 x 8192 x 8192 float32: 2.7 GB of weights),
saves it as .keras, runs `tf2torch convert` on it (the four stages; model.onnx gets its weights in
model.onnx.data), and reports each stage's time and each worker's peak RSS against the weight size
(target: at most 3x). Needs about 9 GB of RAM and 12 GB of disk. Writes
scripts/bench/results/large-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}

BUILD = """
import sys, keras
layers, width, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
keras.utils.set_random_seed(0)
stack = [keras.Input((width,), name="x")] + [keras.layers.Dense(width, activation="relu") for _ in range(layers)]
keras.Sequential(stack + [keras.layers.Dense(10)]).save(path)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=10)
    parser.add_argument("--width", type=int, default=8192)
    parser.add_argument("--keep", type=Path, help="keep the model and the run here")
    args = parser.parse_args()
    weight_mb = (args.layers * (args.width + 1) * args.width + (args.width + 1) * 10) * 4 / 2**20
    with tempfile.TemporaryDirectory(prefix="tf2torch-large-") as tmp:
        scratch = args.keep or Path(tmp)
        scratch.mkdir(parents=True, exist_ok=True)
        model, out, config = scratch / "large.keras", scratch / "run", scratch / "large.yaml"
        print(f"building {args.layers} x Dense({args.width}): {weight_mb:.0f} MB of weights", flush=True)
        subprocess.run(
            [sys.executable, "-c", BUILD, str(args.layers), str(args.width), str(model)], env=ENV, check=True
        )
        config.write_text(
            "native: false\nsamples: 1\nbatch_size: 1\ntolerances:\n  default: {atol: 1.0e-4, rtol: 1.0e-3}\n"
        )
        started = time.perf_counter()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pipeline",
                "convert",
                str(model),
                "--config",
                str(config),
                "--out",
                str(out),
            ],
            cwd=REPO,
            env=ENV,
        )
        wall = time.perf_counter() - started
        report = json.loads((out / "report.json").read_text())
        export = next(s for s in report["stages"] if s["name"] == "export")["details"] or {}
        result = {
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "weights_mb": round(weight_mb),
            "exit_code": done.returncode,
            "status": report["status"],
            "wall_s": round(wall, 1),
            "stage_seconds": {s["name"]: s["seconds"] for s in report["stages"]},
            "peak_rss_mb": {g: w["peak_rss_mb"] for g, w in report["workers"].items()},
            "peak_rss_over_weights": {
                g: round(w["peak_rss_mb"] / weight_mb, 2) for g, w in report["workers"].items()
            },
            "external_data": export.get("external_data"),
            "files_mb": {p.name: round(p.stat().st_size / 2**20) for p in out.iterdir() if p.is_file()},
        }
    (HERE / "results").mkdir(exist_ok=True)
    target = HERE / "results" / f"large-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    target.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    print(f"results: {target}")
    return 0 if report["status"] == "pass" else 1


if __name__ == "__main__":
    sys.exit(main())
