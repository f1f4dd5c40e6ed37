"""A batch's results: one row per model, the summary files (JSON, Markdown, JUnit XML, the HTML
dashboard) and the comparison with a baseline summary. Plain Python; no framework imports."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from pipeline import artifacts, plan
from pipeline.errors import UsageError
from pipeline.records import FAILED, Status, worst_by_pair
from pipeline.reports import dashboard
from pipeline.reports import markdown as report

SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"
SUMMARY_HTML = "summary.html"
JUNIT_XML = "junit.xml"
# The dashboard's trend goes back this many earlier runs.
HISTORY_RUNS = 30
# Errors below this are float32 noise: growth from 1e-9 to 1e-8 is not a regression.
ERROR_FLOOR = 1e-6


def row_from_report(entry_id: str, result: dict[str, Any], fingerprint: str | None) -> dict[str, Any]:
    bad = next((s for s in result["stages"] if s["status"] in FAILED), None)
    message = bad["error"] if bad else None
    if message and (culprit := report.culprit_note(result)):
        message += f" ({culprit})"
    return {
        "id": entry_id,
        "model": result["model"],
        "status": result["status"],
        "exit_code": result["exit_code"],
        "cached": False,
        "seconds": result["seconds"],
        "stage": bad["name"] if bad else None,
        "message": message,
        "worst": worst_by_pair(result["stages"]),
        "warnings": result.get("warnings") or [],
        "workers": result.get("workers", {}),
        "out_dir": result["out_dir"],
        "fingerprint": fingerprint,
    }


def skipped_row(entry_id: str, model: str | None, status: str, reason: str) -> dict[str, Any]:
    """A model that did not run: `skipped` (disabled in the zoo) or `interrupted` (the batch stopped)."""
    return {
        "id": entry_id,
        "model": model,
        "status": status,
        "exit_code": None,
        "cached": False,
        "seconds": 0.0,
        "stage": None,
        "message": reason,
        "worst": {},
        "workers": {},
        "out_dir": None,
        "fingerprint": None,
    }


def error_row(entry_id: str, model: str | None, stage: str, message: str, exit_code: int) -> dict[str, Any]:
    row = skipped_row(entry_id, model, Status.ERROR, message)
    row.update(stage=stage, exit_code=exit_code)
    return row


def totals(rows: list[dict[str, Any]], regressions: list[dict[str, Any]]) -> dict[str, int]:
    count = {
        s: sum(r["status"] == s for r in rows) for s in (Status.PASS, Status.SKIPPED, Status.INTERRUPTED)
    }
    return {
        "models": len(rows),
        "passed": count["pass"],
        "failed": sum(r["status"] in FAILED for r in rows),
        "skipped": count["skipped"],
        "interrupted": count["interrupted"],
        "cached": sum(r["cached"] for r in rows),
        "regressions": len(regressions),
    }


def load_baseline(path: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
        return {row["id"]: row for row in data["models"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"cannot read the baseline {path}: {exc}") from None


def regressions(
    rows: list[dict[str, Any]], baseline: dict[str, dict[str, Any]], factor: float
) -> list[dict[str, Any]]:
    """Models that passed in the baseline and fail now, and errors that grew by more than `factor`."""
    found = []
    for row in rows:
        before = baseline.get(row["id"])
        if before is None or before.get("status") != Status.PASS:
            continue
        if row["status"] in FAILED:
            found.append(
                {"id": row["id"], "reason": f"passed in the baseline, now {row['status']}: {row['message']}"}
            )
        elif row["status"] == Status.PASS:
            for pair, now in sorted(row["worst"].items()):
                was = (before.get("worst") or {}).get(pair)
                if was is not None and now > factor * max(was, ERROR_FLOOR):
                    found.append(
                        {
                            "id": row["id"],
                            "reason": f"{pair} max|diff| grew from {was:.3g} to {now:.3g} "
                            f"(more than {factor:g}x)",
                        }
                    )
    return found


def load_history(history: Path | None, baseline: Path | None) -> list[dict[str, Any]]:
    """Earlier summaries for the dashboard's trend, oldest first: each `history/<run>/summary.json`
    (scripts/nightly.sh keeps them under names that sort by time), and the baseline if it is not one
    of them. An unreadable one is left out: the trend is an aid, the baseline check is what judges."""
    paths: list[Path] = []
    if history is not None and history.is_dir():
        paths = sorted(p / SUMMARY_JSON for p in history.iterdir() if (p / SUMMARY_JSON).is_file())
    known = {p.resolve() for p in paths}
    if baseline is not None and baseline.is_file() and baseline.resolve() not in known:
        paths.append(baseline)
    found = []
    for path in paths[-HISTORY_RUNS:]:
        try:
            data = json.loads(path.read_text())
            if isinstance(data.get("models"), list):
                found.append(data)
        except (OSError, ValueError, AttributeError):
            continue
    return found


def write(out: Path, summary: dict[str, Any], history: list[dict[str, Any]] | None = None) -> None:
    artifacts.save_json(out / SUMMARY_JSON, summary)
    artifacts.save_text(out / SUMMARY_MD, markdown(summary))
    artifacts.save_text(out / SUMMARY_HTML, dashboard.render(summary, out, history))
    artifacts.write_atomic(out / JUNIT_XML, lambda tmp: tmp.write_bytes(junit_xml(summary)))


def markdown(summary: dict[str, Any]) -> str:
    lines = [
        f"# Batch: {summary['zoo']}",
        "",
        f"Started {summary['started_at']}, {summary['seconds']:.1f} s, {summary['workers']} worker(s), "
        f"executor {summary['executor']}.",
        "",
        "| model | status | stage | tf_vs_onnx | onnx_vs_torch | tf_vs_torch | time (s) | cached |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in summary["models"]:
        worst = [f"{row['worst'][p]:.2e}" if p in row["worst"] else "-" for p in plan.OUTPUT_PAIRS]
        lines.append(
            f"| {row['id']} | {row['status']} | {row['stage'] or '-'} | {' | '.join(worst)} | "
            f"{row['seconds']:.1f} | {'yes' if row['cached'] else 'no'} |"
        )
    problems = [r for r in summary["models"] if r["status"] != Status.PASS and r["message"]]
    if problems:
        lines += ["", "## Not passed (failed, skipped or not run)", ""]
        lines += [f"- **{r['id']}** ({r['status']}): {r['message']}" for r in problems]
    if summary["regressions"]:
        lines += ["", f"## Regressions against {summary['baseline']}", ""]
        lines += [f"- **{r['id']}**: {r['reason']}" for r in summary["regressions"]]
    t = summary["totals"]
    lines += [
        "",
        f"**{t['passed']} passed, {t['failed']} failed**, {t['skipped']} skipped, {t['cached']} cached"
        + (f", {t['interrupted']} not run (interrupted)" if t["interrupted"] else "")
        + (f", {t['regressions']} regression(s)" if summary["baseline"] else ""),
        "",
    ]
    return "\n".join(lines)


def junit_xml(summary: dict[str, Any]) -> bytes:
    """One test case per model; CI systems show failures with their stage and message."""
    regressed: dict[str, list[str]] = {}
    for r in summary["regressions"]:
        regressed.setdefault(r["id"], []).append(r["reason"])
    suite = ET.Element(
        "testsuite",
        name=f"tf2torch batch {summary['zoo']}",
        time=f"{summary['seconds']:.3f}",
        timestamp=summary["started_at"],
    )
    for row in summary["models"]:
        case = ET.SubElement(
            suite, "testcase", classname="tf2torch.batch", name=row["id"], time=f"{row['seconds']:.3f}"
        )
        if row["status"] == Status.TOLERANCE_FAIL:
            failure = ET.SubElement(case, "failure", type="tolerance_fail", message=_message(row))
            failure.text = _message(row)
        elif row["status"] == Status.ERROR:
            error = ET.SubElement(case, "error", type="conversion_error", message=_message(row))
            error.text = _message(row)
        elif row["status"] in (Status.SKIPPED, Status.INTERRUPTED):
            ET.SubElement(case, "skipped", message=f"{row['status']}: {row['message']}")
        elif row["id"] in regressed:
            text = "; ".join(regressed[row["id"]])
            ET.SubElement(case, "failure", type="regression", message=text).text = text
        out = f"model: {row['model']}\nout_dir: {row['out_dir']}\ncached: {row['cached']}\n"
        ET.SubElement(case, "system-out").text = out
    # The counts are those of the elements written, so they cannot disagree with the cases.
    suite.set("tests", str(len(summary["models"])))
    for kind, attribute in (("failure", "failures"), ("error", "errors"), ("skipped", "skipped")):
        suite.set(attribute, str(len(suite.findall(f"testcase/{kind}"))))
    root = ET.Element("testsuites")
    root.append(suite)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _message(row: dict[str, Any]) -> str:
    return f"{row['stage']}: {row['message']}" if row["stage"] else str(row["message"])
