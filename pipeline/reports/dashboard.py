"""summary.html: a batch's dashboard, one self-contained page (inline CSS and SVG, no script, nothing
fetched). One row per model with its status, the stage it failed at, its worst error per output pair,
its time and a link to its report.html; regressions first, then failures, then the rest. With
earlier summaries (the baseline, the nightly history) each row also shows the model's trend: status,
worst error and time, run by run. Plain Python; reads summaries, never re-runs anything."""

from __future__ import annotations

import html
import math
import os
from pathlib import Path
from typing import Any

from pipeline import artifacts, plan
from pipeline.records import FAILED, Status
from pipeline.reports.html import COLOURS
from pipeline.reports.markdown import VERDICT

# A batch row's status in words: the report's verdict words, and "NOT RUN" for an interrupted batch.
_LABELS = {**VERDICT, Status.INTERRUPTED: "NOT RUN"}

# The order rows appear in: what needs a person's attention first.
_REGRESSED, _FAILED, _NOT_RUN, _PASSED = range(4)


def render(summary: dict[str, Any], out: Path, history: list[dict[str, Any]] | None = None) -> str:
    """The page for `summary` (summary.json's content) written into `out`; `history`: earlier
    summaries, oldest first (the current run is not among them)."""
    history = history or []
    regressed: dict[str, list[str]] = {}
    for found in summary["regressions"]:
        regressed.setdefault(found["id"], []).append(found["reason"])
    past = [{row["id"]: row for row in earlier["models"]} for earlier in history]
    rows = sorted(summary["models"], key=lambda row: (_rank(row, regressed), row["id"]))
    body = "".join(_row(row, regressed.get(row["id"], []), past, out) for row in rows)
    pairs = "".join(f"<th>{p}</th>" for p in plan.OUTPUT_PAIRS)
    trend = "<th>trend (oldest → now)</th>" if history else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>tf2torch batch: {_e(summary["zoo"])}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; padding: 0 1.5em; max-width: 90em; color: #1f2328; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.88em; }}
th, td {{ border: 1px solid #d0d7de; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }}
th {{ background: #f6f8fa; position: sticky; top: 0; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
tr.regressed {{ background: #fff1e5; }}
tr.failed {{ background: #ffebe9; }}
.status {{ font-weight: bold; }}
.muted {{ color: #6e7781; }}
.totals {{ font-size: 1.2em; }}
.message {{ max-width: 40em; word-break: break-word; }}
</style></head><body>
<h1>Batch: <code>{_e(summary["zoo"])}</code></h1>
{_totals(summary)}
<table id="models">
<tr><th>model</th><th>status</th><th>stage</th><th>what happened</th>{pairs}<th>time (s)</th>{trend}</tr>
{body}</table>
<p class="muted">Errors are the largest max|diff| of each pair over the model's outputs and samples.
{_history_note(history)}</p>
</body></html>
"""


def _rank(row: dict[str, Any], regressed: dict[str, list[str]]) -> int:
    if row["id"] in regressed:
        return _REGRESSED
    if row["status"] in FAILED:
        return _FAILED
    if row["status"] in (Status.SKIPPED, Status.INTERRUPTED):
        return _NOT_RUN
    return _PASSED


def _totals(summary: dict[str, Any]) -> str:
    t = summary["totals"]
    parts = [f"<b>{t['passed']} passed</b>", f"<b>{t['failed']} failed</b>", f"{t['skipped']} skipped"]
    if t["interrupted"]:
        parts.append(f"{t['interrupted']} not run (interrupted)")
    parts.append(f"{t['cached']} from the cache")
    if summary["baseline"]:
        parts.append(
            f"<b>{t['regressions']} regression(s)</b> against <code>{_e(summary['baseline'])}</code>"
        )
    return (
        f'<p class="totals">{", ".join(parts)}</p>'
        f'<p class="muted">Started {_e(summary["started_at"])}, {summary["seconds"]:.1f} s, '
        f"{summary['workers']} worker(s), executor {_e(summary['executor'])}.</p>"
    )


def _row(row: dict[str, Any], reasons: list[str], past: list[dict[str, dict]], out: Path) -> str:
    status = Status(row["status"])
    css = "regressed" if reasons else "failed" if status in FAILED else ""
    message = "; ".join(_e(r) for r in reasons)
    # A regression's reason already quotes the failure's message.
    if row["message"] and status != Status.PASS and not any(row["message"] in r for r in reasons):
        message += ("<br>" if message else "") + _e(row["message"])
    errors = "".join(
        f'<td class="num">{row["worst"][p]:.2e}</td>' if p in row["worst"] else '<td class="num">-</td>'
        for p in plan.OUTPUT_PAIRS
    )
    cached = ' <span class="muted">(cached)</span>' if row["cached"] else ""
    trend = f"<td>{_trend([earlier.get(row['id']) for earlier in past], row)}</td>" if past else ""
    return (
        f'<tr class="{css}" data-id="{_e(row["id"])}"><td>{_link(row, out)}</td>'
        f'<td class="status" style="color:{COLOURS[status]}">{_LABELS[status]}'
        f"{' (REGRESSED)' if reasons else ''}</td>"
        f'<td>{_e(row["stage"] or "")}</td><td class="message">{message}</td>{errors}'
        f'<td class="num">{row["seconds"]:.1f}{cached}</td>{trend}</tr>\n'
    )


def _link(row: dict[str, Any], out: Path) -> str:
    """The model's id, linking to its report.html (relative, so the folder can move) when it has one."""
    name = f"<code>{_e(row['id'])}</code>"
    if not row.get("out_dir"):
        return name
    report = Path(row["out_dir"]) / artifacts.REPORT_HTML
    if not report.is_file():
        return name
    href = Path(os.path.relpath(report.resolve(), out.resolve())).as_posix()
    return f'<a href="{_e(href)}">{name}</a>'


def _worst_error(row: dict[str, Any] | None) -> float | None:
    values = [v for p, v in (row or {}).get("worst", {}).items() if p in plan.OUTPUT_PAIRS]
    return max(values) if values else None


def _trend(earlier: list[dict[str, Any] | None], now: dict[str, Any]) -> str:
    """Run by run, oldest first: a dot per run (its colour the status, its height the worst error on
    a log scale), then the change of error and time since the run before."""
    runs = [*earlier, now]
    width, height, step = 12 + 14 * (len(runs) - 1), 30, 14
    errors = [_worst_error(r) for r in runs if r and r["status"] == Status.PASS]
    logs = [math.log10(max(e, 1e-12)) for e in errors if e is not None]
    low, high = (min(logs), max(logs)) if logs else (0.0, 0.0)
    dots = []
    for i, run in enumerate(runs):
        x = 6 + i * step
        if run is None:
            dots.append(
                f'<circle cx="{x}" cy="{height / 2}" r="2" fill="#d0d7de"><title>not in this run</title></circle>'
            )
            continue
        error = _worst_error(run)
        if run["status"] == Status.PASS and error is not None and high > low:
            y = height - 5 - (math.log10(max(error, 1e-12)) - low) / (high - low) * (height - 10)
        else:
            y = height / 2
        colour = COLOURS[Status(run["status"])]
        tip = (
            f"{run['status']}, worst error {error:.2e}, {run['seconds']:.1f} s"
            if error is not None
            else run["status"]
        )
        dots.append(f'<circle cx="{x}" cy="{y:.1f}" r="4" fill="{colour}"><title>{_e(tip)}</title></circle>')
    svg = f'<svg width="{width}" height="{height}" role="img" aria-label="trend">{"".join(dots)}</svg>'
    before = next((r for r in reversed(earlier) if r is not None), None)
    if before is None:
        return svg + ' <span class="muted">new</span>'
    change = []
    was, is_ = _worst_error(before), _worst_error(now)
    if was is not None and is_ is not None:
        change.append(f"error {was:.1e} → {is_:.1e}")
    if before["seconds"] and now["seconds"] and not now["cached"]:
        change.append(f"time {before['seconds']:.1f} → {now['seconds']:.1f} s")
    if before["status"] != now["status"]:
        change.append(f"was {before['status']}")
    return svg + (f' <span class="muted">{_e(", ".join(change))}</span>' if change else "")


def _history_note(history: list[dict[str, Any]]) -> str:
    if not history:
        return "No earlier runs were given (--baseline, --history): no trend."
    times = [h.get("started_at", "?") for h in history]
    return f"Trend over {len(history)} earlier run(s), from {_e(times[0])} to {_e(times[-1])}, then this one."


def _e(text: Any) -> str:
    return html.escape(str(text))
