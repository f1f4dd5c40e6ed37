"""`--out` as an fsspec URL (`s3://bucket/runs`, `gs://...`, `file:///...`): the batch's output on
object storage, for clusters without a shared file system.

The driver works in a local staging directory (one per URL, under the user's cache) exactly as with a
local `--out`, so publishing, the lock and the summary do not change; the URL is the lasting copy:

- before planning, each entry's records (result.json, report.json, of `<id>` and `<id>.failed`) come
  down from the URL, so the cache and the resume answer from there;
- each model's run directory goes up as soon as it finishes (replacing the one there), and the staging
  copy keeps only its reports;
- the summary files go up at the end, their paths pointing at the URL.

Only the driver needs the storage's library and credentials (s3fs, gcsfs): the slots send their run
directories to the driver. Imports fsspec only for a URL.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path
from typing import Any

from pipeline import artifacts
from pipeline.batching import summary
from pipeline.batching.task import RESULT_JSON
from pipeline.errors import UsageError
from pipeline.orchestrator.publish import FAILED_SUFFIX

# What a run directory keeps in staging once uploaded: the cache record and the reports.
KEPT = (RESULT_JSON, artifacts.REPORT_JSON, artifacts.REPORT_MD, artifacts.REPORT_HTML)
SUMMARY_FILES = (summary.SUMMARY_JSON, summary.SUMMARY_MD, summary.SUMMARY_HTML, summary.JUNIT_XML)


def is_url(out: str | os.PathLike) -> bool:
    return isinstance(out, str) and re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", out) is not None


def staging_dir(url: str) -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", url)[-60:]
    return cache / "tf2torch" / "batch-out" / f"{name}-{hashlib.sha256(url.encode()).hexdigest()[:12]}"


class RemoteOut:
    def __init__(self, url: str, staging: Path | None = None):
        try:
            import fsspec
        except ImportError:
            raise UsageError(f"--out {url} needs fsspec: pip install fsspec") from None
        self.url = url.rstrip("/")
        try:
            self.fs, self.root = fsspec.core.url_to_fs(self.url)
        except (ImportError, ValueError) as exc:  # an unknown protocol, or its library missing
            raise UsageError(f"--out {url}: {exc}") from None
        self.staging = staging or staging_dir(self.url)

    def pull_records(self, ids: list[str]) -> None:
        """Bring each entry's cache record and report down into staging (both may be absent)."""
        try:
            self.fs.makedirs(self.root, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"--out {self.url}: cannot create it: {exc}") from None
        for entry_id in ids:
            for name in (entry_id, entry_id + FAILED_SUFFIX):
                # The URL is the lasting copy: what staging holds of an earlier run goes.
                local = self.staging / name
                shutil.rmtree(local, ignore_errors=True)
                for record in (RESULT_JSON, artifacts.REPORT_JSON):
                    remote = f"{self.root}/{name}/{record}"
                    if self.fs.exists(remote):
                        local.mkdir(parents=True, exist_ok=True)
                        self.fs.get(remote, str(local / record))

    def push_run(self, row: dict[str, Any]) -> None:
        """Upload a finished model's run directory; keep only its reports in staging."""
        if not row.get("out_dir") or row.get("cached"):
            return
        local = Path(row["out_dir"])
        if not local.is_dir():
            return
        remote = f"{self.root}/{local.name}"
        if self.fs.exists(remote):
            self.fs.rm(remote, recursive=True)
        self.fs.put(str(local), remote, recursive=True)
        if not local.name.endswith(FAILED_SUFFIX):
            # As publish.py does: a failure kept aside says nothing about a model that ran since.
            failed = f"{remote}{FAILED_SUFFIX}"
            if self.fs.exists(failed):
                self.fs.rm(failed, recursive=True)
        for path in sorted(local.rglob("*"), reverse=True):
            if path.is_file() and path.relative_to(local).as_posix() not in KEPT:
                path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()

    def push_summary(self, result: dict[str, Any]) -> None:
        """Upload the summary files, summary.json's paths pointing at the URL."""
        pointed = {**result, "out_dir": self.url, "staging_dir": str(self.staging)}
        pointed["models"] = [
            {**row, "out_dir": f"{self.url}/{Path(row['out_dir']).name}" if row.get("out_dir") else None}
            for row in result["models"]
        ]
        artifacts.save_json(self.staging / summary.SUMMARY_JSON, pointed)
        for name in SUMMARY_FILES:
            self.fs.put(str(self.staging / name), f"{self.root}/{name}")
