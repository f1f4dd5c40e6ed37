"""Training sweep: train.py and the training check measured against Keras's own lists.

A TF process (training_cases.py) makes one small compiled model per entry of `keras.optimizers` (with
each option), `keras.losses`, `keras.regularizers` and `keras.optimizers.schedules`; they are then
converted as one `tf2torch batch` with `training_check: 5` in float64 and no TODO accepted. A case is
mapped when its training stage passes: train.py has no TODO and trains as Keras does. Per list it
prints

    training sweep, optimizers: 40/171 mapped (keras 3.15.1)

and `-v` each other case with its reason. A case's reason is known when docs/training.md's table
"Training sweep, measured" lists it: the sweep exits 1 when a case fails that is not listed there, or
a listed one passes (then its row goes).

    python -m pipeline.coverage.training_sweep [-k TEXT ...] [-v] [--markdown] [--workers N] [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TRAINING_PAGE = REPO / "docs" / "training.md"
_SECTION = "## Training sweep, measured"
_ROW = re.compile(r"^\| `([^`]+)` \| (.+?) \|$", flags=re.MULTILINE)
LISTS = ("optimizers", "losses", "regularizers", "schedules")


def make_cases(work: Path) -> dict:
    """The cases of the installed Keras, built in a TF process."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    command = [sys.executable, "-m", "pipeline.coverage.training_cases", str(work)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"training_cases failed:\n{done.stderr[-2000:]}")
    return json.loads((work / "cases.json").read_text())


def run_cases(cases: list[dict], models: Path, out: Path, workers: int) -> dict[str, dict]:
    """Each buildable case converted with a 5-step training check: its batch row, by case name."""
    zoo = {
        "defaults": {
            "samples": 2,
            "training_check": 5,
            "torch_export": False,
            "localize": "never",
            "timeout": 300,
        },
        "models": [{"id": c["name"], "model": str(models / f"{c['name']}.keras")} for c in cases],
    }
    zoo_path = out.parent / "training-sweep.yaml"
    zoo_path.write_text(json.dumps(zoo))  # JSON is YAML
    command = [
        sys.executable,
        "-m",
        "pipeline",
        "batch",
        str(zoo_path),
        "--out",
        str(out),
        "--workers",
        str(workers),
    ]
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    summary = out / "summary.json"
    if not summary.is_file():
        raise SystemExit(
            f"the training sweep's batch wrote no summary.json (exit {done.returncode}):\n{done.stderr[-3000:]}"
        )
    return {row["id"]: row for row in json.loads(summary.read_text())["models"]}


def outcome(case: dict, row: dict | None) -> tuple[bool, str]:
    """(mapped, reason): the training stage passed with no TODO; else its TODOs (what train.py does
    not carry over), or, with none, what the check found, in one line."""
    if case.get("unbuildable"):
        return False, f"Keras cannot build it: {case['unbuildable']}"
    if row is None:
        return False, "not run"
    report = Path(row["out_dir"]) / "report.json"
    stages = json.loads(report.read_text())["stages"] if report.is_file() else []
    training = next((s for s in stages if s["name"] == "training" and s.get("details")), None)
    if training is None:
        return False, f"{row.get('stage')}: {_short(row.get('message') or row['status'])}"
    details = training["details"]
    if row["status"] == "pass" and not details.get("todos"):
        return True, ""
    if details.get("todos"):
        return False, "TODO: " + _short("; ".join(details["todos"]))
    found = details.get("suspects") or [training.get("error") or "outside tolerance"]
    return False, "trains differently: " + _short(found[0])


def _short(text: str, limit: int = 160) -> str:
    """One table cell: a setting's arguments elided (the case's name says them), at most `limit`."""
    text = text.splitlines()[0] if text else ""
    text = re.sub(r"\{[^{}]*\}", "{...}", re.sub(r"\([^()]*\)", "(...)", text)).replace("|", "/")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def known_failures(page: Path = TRAINING_PAGE) -> dict[str, str]:
    text = page.read_text(encoding="utf-8")
    if _SECTION not in text:
        return {}
    section = text[text.index(_SECTION) :]
    following = section.find("\n## ", 1)
    return dict(_ROW.findall(section if following < 0 else section[:following]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", action="append", default=[], help="only cases whose name contains TEXT")
    parser.add_argument("-v", action="store_true", help="list every case that is not mapped, with its reason")
    parser.add_argument("--markdown", action="store_true", help="print docs/training.md's table of the rest")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path, help="write every case's outcome here")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="tf2torch-training-sweep-"))
    manifest = make_cases(work / "cases")
    cases = [c for c in manifest["cases"] if not args.k or any(k in c["name"] for k in args.k)]
    rows = run_cases(
        [c for c in cases if not c.get("unbuildable")], work / "cases", work / "runs", args.workers
    )
    results = {c["name"]: outcome(c, rows.get(c["name"])) for c in cases}
    known = known_failures()
    totals, mapped = (
        Counter(c["list"] for c in cases),
        Counter(c["list"] for c in cases if results[c["name"]][0]),
    )
    for name in LISTS:
        if totals[name]:
            share = mapped[name] / totals[name]
            print(
                f"training sweep, {name}: {mapped[name]}/{totals[name]} mapped ({share:.0%}; keras {manifest['keras']})"
            )
    unexpected = [
        f"{name}: {'passes, but docs/training.md lists it' if ok else reason}"
        for name, (ok, reason) in results.items()
        if ok == (name in known)
    ]
    if args.v:
        for name, (ok, reason) in results.items():
            if not ok:
                print(f"  {name}: {reason}")
    if args.markdown:
        print("\n| case | why not mapped |\n|---|---|")
        for name, (ok, reason) in results.items():
            if not ok:
                print(f"| `{name}` | {known.get(name) or reason} |")
    if args.json:
        args.json.write_text(
            json.dumps({n: {"mapped": ok, "reason": r} for n, (ok, r) in results.items()}, indent=1)
        )
    if unexpected:
        print(f"{len(unexpected)} case(s) differ from docs/training.md's list:", file=sys.stderr)
        for line in unexpected:
            print(f"  {line}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
