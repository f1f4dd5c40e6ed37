"""Batch progress: a live bar on a terminal, one plain line per model otherwise (cron, CI logs)."""

from __future__ import annotations

import sys
import threading
from typing import Any, TextIO

from pipeline.records import Status


def make_progress(stream: TextIO | None = None):
    stream = stream or sys.stdout
    return LiveProgress(stream) if stream.isatty() else LineProgress(stream)


def _row_line(row: dict[str, Any]) -> str:
    status = row["status"].upper().replace("_", " ")
    where = f" at {row['stage']}" if row.get("stage") else ""
    tail = " (cached)" if row["cached"] else f" {row['seconds']:.1f}s" if row["exit_code"] is not None else ""
    if row.get("attempts"):
        tail += f" (attempt {row['attempts']})"
    message = f": {row['message']}" if row["status"] != Status.PASS and row.get("message") else ""
    warnings = row.get("warnings") or []
    if warnings:  # what no sample exercised, as under `convert`'s verdict
        message += f" ({len(warnings)} warning(s): {warnings[0]}{'; ...' if len(warnings) > 1 else ''})"
    return f"{row['id']} {status}{where}{tail}{message}"


class LineProgress:
    def __init__(self, stream: TextIO):
        self.stream = stream
        self.total = self.done = 0
        self._lock = threading.Lock()

    def begin(self, total: int, already: list[dict[str, Any]]) -> None:
        self.total, self.done = total, 0
        cached = sum(r["cached"] for r in already)
        self._print(f"{total} models: {cached} cached, {total - len(already)} to convert")
        for row in already:
            self.finished(row)

    def started(self, entry_id: str) -> None:
        pass  # one line per finished model is enough in a log

    def retrying(self, entry_id: str, reason: str) -> None:
        """A model whose run was lost (its worker, its node) goes back in the queue."""
        with self._lock:
            self._print(f"{entry_id}: {reason}; it runs again")

    def finished(self, row: dict[str, Any]) -> None:
        with self._lock:
            self.done += 1
            self._print(f"[{self.done}/{self.total}] {_row_line(row)}")

    def end(self, summary: dict[str, Any]) -> None:
        self._print(_totals_line(summary))

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)


class LiveProgress(LineProgress):
    """rich's live bar: counts, the models in progress; finished models scroll above it."""

    def begin(self, total: int, already: list[dict[str, Any]]) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = Console(file=self.stream)
        self.running: list[str] = []
        self.counts = {"pass": 0, "failed": 0, "cached": sum(r["cached"] for r in already)}
        self.bar = Progress(
            TextColumn("[bold]batch"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=self.console,
        )
        self.task = self.bar.add_task(self._description(), total=total, completed=len(already))
        self.bar.start()
        for row in already:
            self.bar.console.print(_row_line(row), markup=False, highlight=False)

    def started(self, entry_id: str) -> None:
        with self._lock:
            if entry_id not in self.running:  # a retried model starts again
                self.running.append(entry_id)
            self.bar.update(self.task, description=self._description())

    def retrying(self, entry_id: str, reason: str) -> None:
        with self._lock:
            if entry_id in self.running:
                self.running.remove(entry_id)
            self.bar.console.print(f"{entry_id}: {reason}; it runs again", markup=False, highlight=False)
            self.bar.update(self.task, description=self._description())

    def finished(self, row: dict[str, Any]) -> None:
        with self._lock:
            if row["id"] in self.running:
                self.running.remove(row["id"])
            self.counts["pass" if row["status"] == Status.PASS else "failed"] += (
                row["status"] != Status.SKIPPED
            )
            self.bar.console.print(_row_line(row), markup=False, highlight=False)
            self.bar.update(self.task, advance=1, description=self._description())

    def end(self, summary: dict[str, Any]) -> None:
        self.bar.stop()
        self.console.print(_totals_line(summary), markup=False, highlight=False)

    def _description(self) -> str:
        c = self.counts
        now = ", ".join(self.running) or "-"
        return f"{c['pass']} passed, {c['failed']} failed, {c['cached']} cached | now: {now}"


def _totals_line(summary: dict[str, Any]) -> str:
    t = summary["totals"]
    text = f"{t['passed']} passed, {t['failed']} failed, {t['skipped']} skipped, {t['cached']} cached"
    if t["interrupted"]:
        text += f", {t['interrupted']} not run (interrupted; run again to resume)"
    if summary["baseline"]:
        text += f", {t['regressions']} regression(s) against {summary['baseline']}"
    return f"{text}; summary: {summary['out_dir']}/summary.md"
