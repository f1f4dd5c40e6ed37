"""report.html: one self-contained page (plots embedded as SVG) with the stage verdicts, a histogram
of absolute errors per stage pair and, when localisation ran, the error along the graph with the
culprit marked. It reads the report and the run's .npz artifacts; it never re-runs anything.
Imports matplotlib (not a framework) only when called."""

from __future__ import annotations

import html
import io
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import artifacts
from pipeline.records import Status
from pipeline.reports.markdown import VERDICT as _VERDICT

COLOURS = {
    Status.PASS: "#1a7f37",
    Status.TOLERANCE_FAIL: "#cf222e",
    Status.ERROR: "#cf222e",
    Status.SKIPPED: "#6e7781",
    Status.INTERRUPTED: "#9a6700",  # batch rows (summary.html)
}


def write(out: Path, result: dict[str, Any]) -> None:
    artifacts.save_text(out / artifacts.REPORT_HTML, render(out, result))


def render(out: Path, result: dict[str, Any]) -> str:
    parts = [_head(result), _stages(result), _comparisons(result)]
    histograms = _error_histograms(out, result)
    if histograms:
        parts.append(f"<h2>Absolute errors per stage pair</h2>{histograms}")
    parts.append(_localization(result.get("localization")))
    return "\n".join(parts) + "\n</body></html>\n"


def _head(result: dict[str, Any]) -> str:
    status = result["status"]
    versions = ", ".join(f"{k} {v}" for k, v in result["versions"].items() if v)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>tf2torch: {_e(result["model"])}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; padding: 0 1.5em; max-width: 72em; color: #1f2328; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }}
th, td {{ border: 1px solid #d0d7de; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }}
th {{ background: #f6f8fa; }}
code {{ font-size: 0.85em; word-break: break-all; }}
.verdict {{ font-size: 1.4em; font-weight: bold; color: {COLOURS[status]}; }}
.figure svg {{ max-width: 100%; height: auto; }}
.muted {{ color: #6e7781; }}
</style></head><body>
<h1>Conversion report: <code>{_e(result["model"])}</code></h1>
<p class="verdict">{_VERDICT[status]} (exit code {result["exit_code"]})</p>
<p>Format <code>{_e(result["format"])}</code>, opset {result["config"]["opset"]}, seed {result["config"]["seed"]},
{result["config"]["samples"]} sample batch(es); started {_e(result["started_at"])}, took {result["seconds"]:.1f} s.</p>
<p class="muted">{_e(versions)}</p>{_warnings(result)}"""


def _warnings(result: dict[str, Any]) -> str:
    """What no sample exercised (a branch, a mask): under the verdict, as in the terminal."""
    items = "".join(f"<li>{_e(w)}</li>" for w in result.get("warnings") or [])
    return f"\n<h2>Warnings</h2><ul>{items}</ul>" if items else ""


def _stages(result: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{_e(s['name'])}</td><td style='color:{COLOURS[s['status']]}'><b>{_VERDICT[s['status']]}</b></td>"
        f"<td>{s['seconds']:.2f}</td><td>{_e(s.get('error') or s.get('reason') or '')}</td></tr>"
        for s in result["stages"]
    )
    return (
        "<h2>Stages</h2><table><tr><th>stage</th><th>verdict</th><th>seconds</th><th>note</th></tr>"
        f"{rows}</table>"
    )


def _comparisons(result: dict[str, Any]) -> str:
    rows = []
    for c in (c for s in result["stages"] for c in s["comparisons"]):
        if "error" in c:
            rows.append(
                f"<tr><td>{c['pair']}</td><td><code>{_e(c['output'])}</code></td><td colspan=5>{_e(c['error'])}</td></tr>"
            )
            continue
        ok = "yes" if c["passed"] else "<b style='color:#cf222e'>no</b>"
        rows.append(
            f"<tr><td>{c['pair']}</td><td><code>{_e(c['output'])}</code></td><td>{c['max_abs_diff']:.3g}</td>"
            f"<td>{c['p99_abs_diff']:.3g}</td><td>{c['cosine_similarity']:.6f}</td>"
            f"<td>{c['stat']}: atol {c['atol']:g}, rtol {c['rtol']:g}</td><td>{ok}</td></tr>"
        )
    if not rows:
        return "<p>No comparison ran.</p>"
    return (
        "<h2>Comparisons</h2><table><tr><th>pair</th><th>output</th><th>max abs diff</th><th>p99 abs diff</th>"
        f"<th>cosine</th><th>rule</th><th>passed</th></tr>{''.join(rows)}</table>"
    )


def _figure(width: float, height: float):
    # A bare Figure with the SVG canvas: pyplot's import and its figure registry cost 0.6 s a report.
    from matplotlib.backends.backend_svg import FigureCanvasSVG
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasSVG(fig)
    return fig


def _error_histograms(out: Path, result: dict[str, Any]) -> str:
    pairs: dict[str, list[dict[str, Any]]] = {}
    for c in (c for s in result["stages"] for c in s["comparisons"] if "max_abs_diff" in c):
        pairs.setdefault(c["pair"], []).append(c)
    if not pairs:
        return ""
    cache: dict[str, dict[str, np.ndarray]] = {}

    def arrays(key: str) -> dict[str, np.ndarray]:
        if key not in cache:
            cache[key] = artifacts.load_arrays(out / artifacts.COMPARED[key])
        return cache[key]

    fig = _figure(4.2 * len(pairs), 3.2)
    axes = fig.subplots(1, len(pairs), squeeze=False)
    for ax, (pair, rows) in zip(axes[0], pairs.items(), strict=True):
        with np.errstate(invalid="ignore"):  # inf - inf: dropped below, with every other non-finite
            diffs = _abs_differences(rows, arrays)
        diffs = diffs[np.isfinite(diffs)]
        exact = int((diffs == 0).sum())
        nonzero = diffs[diffs > 0]
        if nonzero.size:
            ax.hist(np.log10(nonzero), bins=40, color="#0969da")
        else:  # log scale has no place for zero: say it rather than draw an empty plot
            ax.text(0.5, 0.5, "every element equal", transform=ax.transAxes, ha="center", fontsize=9)
        ax.axvline(
            np.log10(rows[0]["atol"]) if rows[0]["atol"] > 0 else -12,
            color="#cf222e",
            linestyle="--",
            label=f"atol {rows[0]['atol']:g}",
        )
        ax.set_title(f"{pair}: {diffs.size} elements, {exact} equal", fontsize=9)
        ax.set_xlabel("log10 |candidate - reference|", fontsize=8)
        ax.set_ylabel("elements", fontsize=8)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _svg(fig)


def _localization(localization: dict[str, Any] | None) -> str:
    if localization is None:
        return ""
    if localization["status"] != "done":
        reason = localization.get("error") or localization.get("reason")
        return f"<h2>Localisation</h2><p>{_e(localization['status'])}: {_e(reason)}</p>"
    parts = [
        "<h2>Localisation</h2><p>Every intermediate value compared on the first input batch; the culprit is "
        "the first node whose output is out of tolerance while everything it reads is within.</p>"
    ]
    for pair, found in localization["pairs"].items():
        parts.append(f"<h3>{_e(pair)}</h3>")
        if found["status"] in ("skipped", "error"):
            parts.append(f"<p>{found['status']}: {_e(found.get('reason') or found.get('error'))}</p>")
            continue
        culprit = found.get("culprit")
        if culprit:
            parts.append(
                f"<p>First diverging node: <code>{_e(culprit['node'])}</code> ({_e(culprit['op_type'])})</p>"
            )
        else:
            parts.append(f"<p>No node diverges ({found['compared']} values compared).</p>")
        if found.get("values"):
            parts.append(_error_along_graph(found["values"], culprit))
        if culprit:
            parts.append(_path_table(culprit))
    return "\n".join(parts)


def _path_table(culprit: dict[str, Any]) -> str:
    rows = []
    for row in culprit["path"]:
        mark = " <b style='color:#cf222e'>&larr; culprit</b>" if row["node"] == culprit["node"] else ""
        diff = "-" if row["max_abs_diff"] is None else f"{row['max_abs_diff']:.3g}"
        ok = "yes" if row["passed"] else "<b style='color:#cf222e'>no</b>"
        rows.append(
            f"<tr><td><code>{_e(row['value'])}</code></td><td><code>{_e(row['node'] or '-')}</code>{mark}</td>"
            f"<td>{_e(row['op_type'])}</td><td>{diff}</td><td>{ok}</td></tr>"
        )
    return (
        "<p>Error along the path from the inputs through the culprit to the failing output:</p><table>"
        "<tr><th>value</th><th>node</th><th>op</th><th>max abs diff</th><th>within tolerance</th></tr>"
        f"{''.join(rows)}</table>"
    )


def _error_along_graph(values: list[dict[str, Any]], culprit: dict[str, Any] | None) -> str:
    errors = np.array([max(v.get("max_abs_diff") or 0.0, 1e-12) for v in values])
    passed = np.array([v["passed"] for v in values])
    fig = _figure(9, 3)
    ax = fig.subplots()
    index = np.arange(len(values))
    ax.semilogy(index, errors, color="#8c959f", linewidth=0.8)
    ax.scatter(index[passed], errors[passed], s=10, color="#1a7f37", label="within tolerance")
    ax.scatter(index[~passed], errors[~passed], s=14, color="#cf222e", label="outside tolerance")
    if culprit:
        at = next(i for i, v in enumerate(values) if v["node"] == culprit["node"])
        ax.axvline(at, color="#cf222e", linestyle="--")
        ax.annotate(
            f"culprit: {culprit['op_type']}",
            (at, errors[at]),
            textcoords="offset points",
            xytext=(6, 6),
            fontsize=8,
            color="#cf222e",
        )
    ax.set_xlabel("value, in graph order (inputs first)", fontsize=8)
    ax.set_ylabel("max |diff| (floored at 1e-12)", fontsize=8)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return _svg(fig)


def _svg(fig) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg")
    svg = buffer.getvalue()
    return f"<div class='figure'>{svg[svg.index('<svg') :]}</div>"


def _e(text: Any) -> str:
    return html.escape(str(text))


def _abs_differences(rows, arrays) -> np.ndarray:
    return np.concatenate(
        [
            np.abs(
                arrays(r["candidate"])[r["output"]].astype(np.float64)
                - arrays(r["reference"])[r["output"]].astype(np.float64)
            ).ravel()
            for r in rows
        ]
    )
