"""Typed records of a run: each stage's result and each comparison row, with the status they carry.
They serialise (`to_json`) to exactly the dicts report.json has always held, so reports written by
earlier versions still read; readers of report.json (report.md/html, summaries) work on those dicts.
Framework-free."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    """A stage's, a run's or a batch row's status. A StrEnum: it equals and serialises as its string,
    so `record["status"] == Status.PASS` holds for a dict read back from report.json."""

    PASS = "pass"
    TOLERANCE_FAIL = "tolerance_fail"  # ran, but an output is outside tolerance (exit 1)
    ERROR = "error"  # could not do its job (exit 2 or 3)
    SKIPPED = "skipped"  # not run, with the reason
    INTERRUPTED = "interrupted"  # batch rows only: the batch stopped before the model ran


FAILED = (Status.TOLERANCE_FAIL, Status.ERROR)


@dataclass
class ComparisonRow:
    """One output of one comparison pair: `candidate`'s array against `reference`'s (keys of
    artifacts.COMPARED) with the error figures of compare.compare_arrays."""

    pair: str
    reference: str
    candidate: str
    output: str
    figures: dict[str, Any] = field(default_factory=dict)  # compare_arrays's; includes `passed`
    passed: bool = False
    error: str | None = None  # why the arrays could not be compared at all (shape, dtype)

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> ComparisonRow:
        known = ("pair", "reference", "candidate", "output", "passed", "error")
        figures = {k: v for k, v in row.items() if k not in known}
        return cls(
            row["pair"],
            row["reference"],
            row["candidate"],
            row["output"],
            figures,
            bool(row["passed"]),
            row.get("error"),
        )

    def to_json(self) -> dict[str, Any]:
        row: dict[str, Any] = {
            "pair": self.pair,
            "reference": self.reference,
            "candidate": self.candidate,
            "output": self.output,
            **self.figures,
            "passed": self.passed,
        }
        if self.error is not None:
            row["error"] = self.error
        return row


@dataclass
class StageRecord:
    """What one stage did: its status, time, the stage's own details and the comparisons it is judged on."""

    name: str
    status: Status = Status.PASS
    seconds: float = 0.0
    error: str | None = None
    details: dict[str, Any] | None = None
    comparisons: list[ComparisonRow] = field(default_factory=list)
    reason: str | None = None  # why it was skipped
    exit_code: int | None = None  # of a failed stage: what the command exits with
    worker_failure: bool = False  # the worker died or timed out: may not happen on a re-run
    # The worker died (killed, crashed), not timed out: a batch retries the model on a fresh worker.
    worker_lost: bool = False
    # A ConfigError: the config contradicts the model (or names a file that is not usable). The run is
    # refused with exit 2 and nothing published; such a record never reaches a report.
    config_error: bool = False
    # The worker's resident memory (MB) when the stage began and its peak during the stage.
    memory_mb: dict[str, float | None] | None = None

    @classmethod
    def skipped(cls, name: str, reason: str) -> StageRecord:
        return cls(name, Status.SKIPPED, reason=reason)

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> StageRecord:
        """A record read back from a report.json."""
        return cls(
            record["name"],
            Status(record["status"]),
            record.get("seconds", 0.0),
            record.get("error"),
            record.get("details"),
            [ComparisonRow.from_json(row) for row in record.get("comparisons", [])],
            record.get("reason"),
            record.get("exit_code"),
            bool(record.get("worker_failure", False)),
            worker_lost=bool(record.get("worker_lost", False)),
            memory_mb=record.get("memory_mb"),
        )

    def fail(self, status: Status, exit_code: int, error: str) -> None:
        self.status, self.exit_code, self.error = status, exit_code, error

    def to_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "name": self.name,
            "status": str(self.status),
            "seconds": self.seconds,
            "error": self.error,
            "details": self.details,
            "comparisons": [row.to_json() for row in self.comparisons],
        }
        if self.reason is not None:
            record["reason"] = self.reason
        if self.exit_code is not None:
            record["exit_code"] = self.exit_code
        if self.worker_failure:
            record["worker_failure"] = True
        if self.worker_lost:
            record["worker_lost"] = True
        if self.memory_mb is not None:
            record["memory_mb"] = self.memory_mb
        return record


def worst_by_pair(stages: list[dict[str, Any]]) -> dict[str, float]:
    """The largest max|diff| of each compared pair over report.json's stage records (every output,
    every sample): what a batch summary row and a ConversionResult call `worst`."""
    worst: dict[str, float] = {}
    for stage in stages:
        for comparison in stage.get("comparisons") or ():
            if "max_abs_diff" in comparison:
                pair = comparison["pair"]
                worst[pair] = max(worst.get(pair, 0.0), comparison["max_abs_diff"])
    return worst
