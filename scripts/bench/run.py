"""Benchmarks of the pipeline, side by side in one run: figures, not tests (`make bench`).

    .venv/bin/python scripts/bench/run.py [--parts stages,overhead,latency,export_memory,batch] [--repeats 3]
                                          [--models cnn,lstm,linear_regression,mobilenet_v2,resnet50,transformer]

- stages: `tf2torch convert` of each model; each stage's wall time and each worker's peak RSS
  (report.json), median over the repeats.
- overhead: `tf2torch convert` with the four stages only (native passes off) against
  scripts/bench/minimal_convert.py (the same four steps, same libraries, no reporting), both as fresh
  processes, interleaved; the ratio of medians, process start-up included.
- latency: batch 1 and 32 on CPU, the same inputs: onnx2torch's module, the native model.py, it with
  Conv+BatchNorm folded for inference (torch.fx's fuse), torch.compile of it, onnxruntime, and the
  original TF model (scripts/bench/latency.py, one process per framework).
- export_memory: the export stage of a 19.5M-parameter transformer (LARGE): the TF worker's peak
  memory and what the stage added, against the weights' bytes.
- batch: scripts/bench/batch.py (smoke zoo with 1 and 2 workers, a cached re-run).

Writes scripts/bench/results/<UTC time>.json and .md (and prints the Markdown). The harness imports
neither TensorFlow nor torch: every measurement runs in its own process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}

# name -> (zoo id, config keys): every model is saved once as a .keras file, so that the pipeline and
# the minimal script load the same file.
MODELS = {
    "linear_regression": ("demo.linear_regression", {}),
    "cnn": ("demo.cnn", {}),
    "lstm": ("demo.lstm", {}),
    "mobilenet_v2": (
        "keras.applications.MobileNetV2",
        {"inputs": [{"name": "image", "shape": [1, 224, 224, 3]}]},
    ),
    "resnet50": ("keras.applications.ResNet50", {"inputs": [{"name": "image", "shape": [1, 224, 224, 3]}]}),
    "transformer": ("family.transformer_encoder", {"inputs": [{"name": "tokens", "shape": [1, 32, 64]}]}),
}
FOUR_STAGES = {"native": False, "localize": "never"}
# Models whose export memory is measured against their weights (part export_memory), converted from
# their zoo ids: a 19.5M-parameter neighbourhood-attention transformer of a third-party Keras 2
# library at its own 224x224, saved as a SavedModel (configs/zoos/kecam.yaml).
LARGE = {
    "nat_mini": ("kecam.nat.NAT_Mini", {"inputs": [{"name": "input_1", "shape": [1, 224, 224, 3]}]}),
}
EXPORT_ONLY = {"native": False, "torch_export": False, "localize": "never", "samples": 1}
# The architectures torchvision writes by hand: model.py is timed against them.
TORCHVISION = {"resnet50": "resnet50", "mobilenet_v2": "mobilenet_v2"}


def run(command: list[str], ok=(0, 1), **kwargs) -> subprocess.CompletedProcess:
    """Run a command; exit the bench unless its exit code is in `ok` (a convert's 1 is a tolerance
    failure, still timed; any other program must exit 0)."""
    done = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, **kwargs)
    if done.returncode not in ok:
        sys.exit(
            f"failed (exit {done.returncode}): {' '.join(command)}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        )
    return done


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    run(command)
    return time.perf_counter() - started


def save_models(names: list[str], scratch: Path) -> dict[str, Path]:
    """Each model as a .keras file (built from code, seeded), in one TF process."""
    ids = {name: MODELS[name][0] for name in names}
    script = (
        "import sys, json; from pipeline.tf_worker import builtin_models; from pathlib import Path\n"
        "for name, model_id in json.loads(sys.argv[1]).items():\n"
        "    builtin_models.build(model_id).save(Path(sys.argv[2]) / f'{name}.keras')\n"
    )
    run([sys.executable, "-c", script, json.dumps(ids), str(scratch)], ok=(0,))
    return {name: scratch / f"{name}.keras" for name in names}


def write_config(path: Path, keys: dict) -> Path:
    path.write_text(json.dumps(keys))  # JSON is YAML
    return path


def bench_export_memory(scratch: Path, repeats: int) -> dict:
    """Each large model's export stage: the TF worker's peak memory during it, what it added on top
    of what the worker held when it began (report.json's memory_mb), and that against the weights'
    bytes (the ONNX tensors)."""
    results = {}
    for name, (model_id, keys) in LARGE.items():
        config = write_config(scratch / f"{name}-export.yaml", {**keys, **EXPORT_ONLY})
        peaks, added, weights = [], [], 0.0
        for _ in range(repeats):
            out = scratch / "runs" / f"{name}-export"
            run(
                [
                    sys.executable,
                    "-m",
                    "pipeline",
                    "convert",
                    model_id,
                    "--config",
                    str(config),
                    "--out",
                    str(out),
                ]
            )
            report = json.loads((out / "report.json").read_text())
            export = next(s for s in report["stages"] if s["name"] == "export")
            if export["status"] != "pass":
                sys.exit(f"export of {name} failed: {export['error']}")
            memory = export["memory_mb"]
            peaks.append(memory["peak_rss"])
            added.append(memory["peak_rss"] - memory["start_rss"])
            weights = export["details"]["tensor_bytes"] / 2**20
        results[name] = {
            "weights_mb": round(weights, 1),
            "export_peak_mb": statistics.median(peaks),
            "export_added_mb": statistics.median(added),
            "added_over_weights": round(statistics.median(added) / weights, 2),
        }
        print(f"export_memory {name}: {results[name]}", flush=True)
    return results


def bench_stages(files: dict[str, Path], scratch: Path, repeats: int) -> dict:
    results = {}
    for name, model in files.items():
        config = write_config(scratch / f"{name}.yaml", MODELS[name][1])
        stages: dict[str, list[float]] = {}
        memory: dict[str, list[float]] = {}
        for _ in range(repeats):
            out = scratch / "runs" / name
            run(
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
                ]
            )
            report = json.loads((out / "report.json").read_text())
            for stage in report["stages"]:
                stages.setdefault(stage["name"], []).append(stage["seconds"])
            for group, worker in report["workers"].items():
                memory.setdefault(group, []).append(worker["peak_rss_mb"])
        results[name] = {
            "stage_seconds": {k: statistics.median(v) for k, v in stages.items()},
            "peak_rss_mb": {k: statistics.median(v) for k, v in memory.items()},
            "run_dir": str(scratch / "runs" / name),
        }
        print(f"stages {name}: {results[name]}", flush=True)
    return results


def bench_overhead(files: dict[str, Path], scratch: Path, repeats: int) -> dict:
    """The four stages, and the whole default conversion (model.py and model.pt2 too), against the plain
    toolchain's run (tf2onnx + onnxruntime + onnx2torch, scripts/bench/minimal_convert.py), alternated."""
    results = {}
    for name, model in files.items():
        commands = {}
        for key, keys in (("tf2torch", FOUR_STAGES), ("full", {})):
            config = write_config(scratch / f"{name}-{key}.yaml", {**MODELS[name][1], **keys})
            commands[key] = [sys.executable, "-m", "pipeline", "convert", str(model), "--config", str(config)]
            commands[key] += ["--out", str(scratch / key / name)]
        commands["minimal"] = [
            sys.executable,
            str(HERE / "minimal_convert.py"),
            str(model),
            str(scratch / "minimal" / name),
        ]
        times: dict[str, list[float]] = {k: [] for k in commands}
        for repeat in range(repeats):
            order = list(commands) if repeat % 2 == 0 else list(reversed(commands))
            for key in order:
                times[key].append(timed(commands[key]))
        medians = {k: statistics.median(v) for k, v in times.items()}
        results[name] = {
            **{f"{k}_s": v for k, v in medians.items()},
            "ratio": medians["tf2torch"] / medians["minimal"],
            "full_ratio": medians["full"] / medians["minimal"],
        }
        results[name]["samples"] = times
        print(f"overhead {name}: {results[name]}", flush=True)
    return results


def bench_latency(files: dict[str, Path], stage_results: dict) -> dict:
    results = {}
    for name, model in files.items():
        run_dir = stage_results.get(name, {}).get("run_dir")
        if run_dir is None:
            continue
        figures = {}
        for framework in ("torch", "tf"):
            done = run([sys.executable, str(HERE / "latency.py"), framework, run_dir, str(model)], ok=(0,))
            figures.update(json.loads(done.stdout.strip().splitlines()[-1]))
        results[name] = figures
        print(f"latency {name}: {figures}", flush=True)
    return results


def bench_against(contender: str, files: dict[str, Path], stage_results: dict) -> dict:
    """model.py against `contender` (latency.py's torchvision or keras_torch), model by model."""
    results = {}
    for name, model in files.items():
        run_dir = stage_results.get(name, {}).get("run_dir")
        if run_dir is None or (contender == "torchvision" and name not in TORCHVISION):
            continue
        what = TORCHVISION[name] if contender == "torchvision" else str(model)
        done = run([sys.executable, str(HERE / "latency.py"), contender, run_dir, what], ok=(0,))
        results[name] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{contender} {name}: {results[name]}", flush=True)
    return results


def bench_batch(repeats: int) -> dict:
    done = run([sys.executable, str(HERE / "batch.py"), "--repeats", str(repeats), "--json"], ok=(0,))
    return json.loads(done.stdout.strip().splitlines()[-1])


def machine() -> dict:
    memory_kb = next(
        (
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        ),
        0,
    )
    return {
        "cores": os.cpu_count(),
        "memory_gb": round(memory_kb / 1024**2, 1),
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
    }


def markdown(result: dict) -> str:
    lines = [
        f"Measured {result['started_at']} on {result['machine']['cores']} cores, "
        f"{result['machine']['memory_gb']} GB RAM; `make bench` ({result['repeats']} repeats, medians).",
        "",
    ]
    stages = result.get("stages")
    if stages:
        names = list(dict.fromkeys(s for r in stages.values() for s in r["stage_seconds"]))
        lines += [
            "| model | "
            + " | ".join(f"{n} s" for n in names)
            + " | TF worker peak MB | torch worker peak MB |"
        ]
        lines.append("|---" * (len(names) + 3) + "|")
        for model, r in stages.items():
            cells = [f"{r['stage_seconds'].get(n, 0):.2f}" for n in names]
            peaks = [f"{r['peak_rss_mb'].get(g, 0):.0f}" for g in ("tf", "torch")]
            lines.append(f"| {model} | " + " | ".join(cells + peaks) + " |")
        lines += [
            "",
            "| model | native s | export + import s | native / (export + import) |",
            "|---|---|---|---|",
        ]
        for model, r in stages.items():
            seconds = r["stage_seconds"]
            both = seconds.get("export", 0) + seconds.get("import", 0)
            if "native" in seconds and both:
                lines.append(
                    f"| {model} | {seconds['native']:.2f} | {both:.2f} | {seconds['native'] / both:.2f}x |"
                )
        lines.append("")
    overhead = result.get("overhead")
    if overhead:
        lines += [
            "| model | tf2torch, four stages s | tf2torch, whole conversion s | plain toolchain s | four / plain | whole / plain |",
            "|---|---|---|---|---|---|",
        ]
        for model, r in overhead.items():
            lines.append(
                f"| {model} | {r['tf2torch_s']:.2f} | {r['full_s']:.2f} | {r['minimal_s']:.2f} | "
                f"{r['ratio']:.2f}x | {r['full_ratio']:.2f}x |"
            )
        lines.append("")
    lines += _versus_table(result.get("torchvision"), "torchvision", "torchvision", contender_over_mine=False)
    lines += _versus_table(
        result.get("keras_torch"), "keras_torch", "Keras 3 on torch", contender_over_mine=True
    )
    latency = result.get("latency")
    if latency:
        runtimes = ("onnx2torch", "native", "inference", "compiled", "onnxruntime", "tf")
        ratios = (("native", "tf"), ("native", "onnxruntime"), ("inference", "tf"), ("inference", "onnxruntime"),
                  ("compiled", "onnxruntime"))  # fmt: skip
        lines += [
            "| model | batch | "
            + " | ".join(f"{r} ms" for r in runtimes)
            + " | "
            + " | ".join(f"{a} / {b}" for a, b in ratios)
            + " |"
        ]
        lines.append("|---" * (len(runtimes) + len(ratios) + 2) + "|")
        for model, r in latency.items():
            for batch in ("1", "32"):
                ms = {k: r.get(f"{k}_b{batch}_ms") for k in runtimes}
                cells = ["-" if ms[k] is None else f"{ms[k]:.2f}" for k in runtimes]
                cells += [f"{ms[a] / ms[b]:.2f}x" if ms[a] and ms[b] else "-" for a, b in ratios]
                lines.append(f"| {model} | {batch} | " + " | ".join(cells) + " |")
        lines.append("")
    memory = result.get("export_memory")
    if memory:
        lines += [
            "| model (export stage) | weights MB | TF worker peak MB | added by export MB | added / weights |",
            "|---|---|---|---|---|",
        ]
        for model, r in memory.items():
            lines.append(
                f"| {model} | {r['weights_mb']:.1f} | {r['export_peak_mb']:.0f} | {r['export_added_mb']:.0f} "
                f"| {r['added_over_weights']:.2f}x |"
            )
        lines.append("")
    batch = result.get("batch")
    if batch:
        lines += ["| batch (smoke zoo) | median s |", "|---|---|"]
        lines += [f"| {k} | {v:.2f} |" for k, v in batch["medians"].items()]
        lines.append("")
        if batch.get("scale"):
            lines += [f"| batch scale ({batch['scale']['entries']} entries, 2 slots) | figure |", "|---|---|"]
            lines += [f"| {k} | {v:.3f} |" for k, v in batch["scale"].items() if k != "entries"]
            lines.append("")
    return "\n".join(lines)


def _versus_table(results: dict | None, key: str, label: str, contender_over_mine: bool) -> list[str]:
    """model.py against a contender at batch 1 and 8 (latency.py's side_by_side figures); the ratio
    as the README quotes it: model.py / torchvision, Keras on torch / model.py."""
    if not results:
        return []
    ratio = f"{label} / model.py" if contender_over_mine else f"model.py / {label}"
    lines = [f"| model | batch | model.py ms | {label} ms | {ratio} |", "|---|---|---|---|---|"]
    for model, r in results.items():
        for batch in (1, 8):
            mine, theirs = r[f"model_py_b{batch}_ms"], r[f"{key}_b{batch}_ms"]
            value = theirs / mine if contender_over_mine else mine / theirs
            lines.append(f"| {model} | {batch} | {mine:.1f} | {theirs:.1f} | {value:.2f}x |")
    return [*lines, ""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--parts", default="stages,overhead,latency,torchvision,keras_torch,export_memory,batch"
    )
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    parts = set(args.parts.split(","))
    names = [n for n in args.models.split(",") if n]
    unknown = [n for n in names if n not in MODELS] + sorted(
        parts - {"stages", "overhead", "latency", "torchvision", "keras_torch", "export_memory", "batch"}
    )
    if unknown:
        parser.error(f"unknown: {', '.join(unknown)} (models: {', '.join(MODELS)})")
    started = datetime.now(UTC)
    result: dict = {
        "started_at": started.isoformat(timespec="seconds"),
        "machine": machine(),
        "repeats": args.repeats,
    }
    with tempfile.TemporaryDirectory(prefix="tf2torch-bench-") as tmp:
        scratch = Path(tmp)
        files = save_models(names, scratch) if parts - {"batch", "export_memory"} else {}
        if parts & {"stages", "latency", "torchvision", "keras_torch"}:
            result["stages"] = bench_stages(files, scratch, args.repeats if "stages" in parts else 1)
        if "overhead" in parts:
            result["overhead"] = bench_overhead(files, scratch, args.repeats)
        if "latency" in parts:
            result["latency"] = bench_latency(files, result["stages"])
        if "torchvision" in parts:
            result["torchvision"] = bench_against("torchvision", files, result["stages"])
        if "keras_torch" in parts:
            result["keras_torch"] = bench_against("keras_torch", files, result["stages"])
        if "export_memory" in parts:
            result["export_memory"] = bench_export_memory(scratch, args.repeats)
        if "batch" in parts:
            result["batch"] = bench_batch(args.repeats)
    RESULTS.mkdir(exist_ok=True)
    stem = started.strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"{stem}.json").write_text(json.dumps(result, indent=1))
    table = markdown(result)
    (RESULTS / f"{stem}.md").write_text(table + "\n")
    print("\n" + table)
    print(f"results: {RESULTS / stem}.json, .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
