"""Benchmark of `tf2torch batch`: wall time of a zoo with 1 and 2 workers, and of a fully cached re-run;
then the scale figure: a zoo of --scale (200) small seeded entries on 2 slots.

    .venv/bin/python scripts/bench/batch.py [--zoo configs/zoos/smoke.yaml] [--repeats 3] [--scale 200]

Each timed run is a fresh `tf2torch batch` process, as a user or cron job would start it. Conversions
run with --force into a scratch directory, so every repeat converts every model; the cached re-run
reuses the last conversion. Prints the median and all samples of each; the ratio 1/2 workers is
measured side by side, in alternating order, because the machine's load drifts.

Scale: `demo.linear_regression` with seeds 0..N-1 (one sample; no model.py or torch.export stage), one
batch of 2 slots, then a fully cached re-run (median of --repeats). The driver's overhead per model is
the slots' time not spent converting: (wall time x 2 - the models' own conversion seconds) / N, which
holds process start, framework imports, planning, shipping results and writing the summary. The
dashboard's figures: summary.html's size for N rows and its render time (median of 5).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # the dashboard is rendered here, in-process


def timed_batch(zoo: Path, out: Path, *extra: str) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "batch", str(zoo), "--out", str(out), *extra],
        cwd=REPO,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"batch failed (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")
    return seconds


def scale_zoo(path: Path, entries: int) -> Path:
    lines = [
        "defaults: {model: demo.linear_regression, samples: 1, native: false, torch_export: false}",
        "models:",
    ]
    lines += [f"  - {{id: lr{seed:03d}, seed: {seed}}}" for seed in range(entries)]
    path.write_text("\n".join(lines) + "\n")
    return path


def scale(entries: int, repeats: int) -> dict:
    from pipeline.batching import summary as batch_summary
    from pipeline.reports import dashboard

    with tempfile.TemporaryDirectory(prefix="tf2torch-bench-scale-") as scratch:
        zoo, out = scale_zoo(Path(scratch) / "zoo.yaml", entries), Path(scratch) / "out"
        wall = timed_batch(zoo, out, "--workers", "2")
        result = json.loads((out / batch_summary.SUMMARY_JSON).read_text())
        converting = sum(row["seconds"] for row in result["models"])
        cached = [timed_batch(zoo, out) for _ in range(repeats)]
        renders = []
        for _ in range(5):
            started = time.perf_counter()
            page = dashboard.render(result, out, None)
            renders.append(time.perf_counter() - started)
    figures = {
        "entries": entries,
        "wall_s": wall,
        "per_model_s": wall / entries,
        "driver_overhead_per_model_s": (wall * 2 - converting) / entries,
        "cached_rerun_s": statistics.median(cached),
        "dashboard_kb": len(page.encode()) / 1024,
        "dashboard_render_s": statistics.median(renders),
    }
    for key, value in figures.items():
        print(
            f"scale {key}: {value:.3f}" if isinstance(value, float) else f"scale {key}: {value}", flush=True
        )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", type=Path, default=REPO / "configs" / "zoos" / "smoke.yaml")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="end with one JSON line of the medians")
    parser.add_argument("--scale", type=int, default=200, help="entries of the scale zoo (0: skip it)")
    args = parser.parse_args()
    samples: dict[str, list[float]] = {"1 worker": [], "2 workers": [], "cached re-run": []}
    with tempfile.TemporaryDirectory(prefix="tf2torch-bench-") as scratch:
        out = Path(scratch) / "out"
        for repeat in range(args.repeats):
            order = ("1", "2") if repeat % 2 == 0 else ("2", "1")
            for workers in order:
                key = "1 worker" if workers == "1" else "2 workers"
                samples[key].append(timed_batch(args.zoo, out, "--force", "--workers", workers))
                print(f"repeat {repeat + 1}: {key}: {samples[key][-1]:.1f} s", flush=True)
            samples["cached re-run"].append(timed_batch(args.zoo, out))
            print(f"repeat {repeat + 1}: cached re-run: {samples['cached re-run'][-1]:.2f} s", flush=True)
    models = sum(1 for line in args.zoo.read_text().splitlines() if line.strip().startswith("- "))
    print(
        f"\nzoo {args.zoo.relative_to(REPO) if args.zoo.is_relative_to(REPO) else args.zoo} "
        f"({models} entries), {os.cpu_count()} cores, {args.repeats} repeats"
    )
    for key, values in samples.items():
        shown = ", ".join(f"{v:.2f}" for v in values)
        print(f"{key:>14}: median {statistics.median(values):6.2f} s   (samples: {shown})")
    ratio = statistics.median(a / b for a, b in zip(samples["1 worker"], samples["2 workers"], strict=True))
    print(f"{'speed-up':>14}: 2 workers are {ratio:.2f}x as fast as 1 (median of per-repeat ratios)")
    figures = scale(args.scale, args.repeats) if args.scale else None
    if args.json:
        medians = {k: statistics.median(v) for k, v in samples.items()}
        print(json.dumps({"medians": medians, "samples": samples, "speed_up": ratio, "scale": figures}))


if __name__ == "__main__":
    main()
