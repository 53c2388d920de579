"""The run ledger: one row in ``runs`` per command, the manifest a run can be replayed from.

A :class:`Run` is opened by the CLI and handed to every stage through the
context; stages report the tables they read and wrote (their Delta versions are
looked up here) and their seeds; the runner records each stage's counts. The
row is written through the lakehouse's Arrow side, so commands without Spark
record runs too.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import pyarrow as pa

from issuerisk.conf import Config
from issuerisk.conf.secrets import env_secrets, redact
from issuerisk.lakehouse import ArrowTables
from issuerisk.schemas.lakehouse import RUNS

REPO_ROOT = Path(__file__).resolve().parent.parent
TRACKED_PACKAGES = (
    "pyspark", "delta-spark", "deltalake", "pyarrow", "pandas", "numpy", "ray", "torch",
    "sentence-transformers", "transformers", "umap-learn", "hdbscan", "numba",
    "scikit-learn", "bertopic", "openai", "py3langid", "cuml-cu12",
)


def new_run_id() -> str:
    """Sortable run id: UTC time plus a random suffix."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]


def git_commit() -> str | None:
    """The commit of the running code, suffixed with + when the tree has uncommitted changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5)
        return head.stdout.strip() + ("+" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions() -> dict[str, str]:
    versions = {}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


@dataclass
class Run:
    """One command's manifest, filled in by the stages it runs."""

    cfg: Config
    command: str
    args: dict[str, Any] = field(default_factory=dict)
    run_id: str = field(default_factory=new_run_id)
    started_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    tables_read: dict[str, int] = field(default_factory=dict)
    tables_written: dict[str, int] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    seeds: dict[str, int] = field(default_factory=dict)
    runtime: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.tables = ArrowTables(self.cfg)
        self.seeds.setdefault("project", self.cfg.project.seed)
        self.runtime.update({"python": platform.python_version(), "host": platform.node(), "platform": platform.platform()})
        self._t0 = time.perf_counter()

    def read(self, *tables: str) -> None:
        """Record the Delta version of tables as this run reads them."""
        for table in tables:
            v = self.tables.version(table)
            if v is not None:
                self.tables_read.setdefault(table, v)

    def wrote(self, *tables: str) -> None:
        """Record the Delta version of tables after this run wrote them."""
        for table in tables:
            v = self.tables.version(table)
            if v is not None:
                self.tables_written[table] = v

    def record_spark(self, spark: Any) -> None:
        """Add Spark's and Java's versions to the manifest."""
        self.runtime["spark"] = spark.version
        self.runtime["java"] = spark.sparkContext._jvm.System.getProperty("java.version")

    def stage(self, name: str, numbers: dict[str, Any]) -> None:
        """Add one stage's counts and timings to the run's metrics (the runner calls this, once per stage)."""
        self.metrics.setdefault(name, {}).update(numbers)

    def _row(self, status: str, error: str | None, ended: datetime | None) -> pa.Table:
        row = {
            "run_id": self.run_id,
            "command": self.command,
            "args_json": json.dumps(self.args, sort_keys=True, default=str),
            "status": status,
            "error": error,
            "config_json": self.cfg.to_json(),
            "config_hash": self.cfg.digest(),
            "git_commit": git_commit(),
            "packages": list(package_versions().items()),
            "runtime": list(self.runtime.items()),
            "seeds": list(self.seeds.items()),
            "tables_read": list(self.tables_read.items()),
            "tables_written": list(self.tables_written.items()),
            "metrics_json": json.dumps(self.metrics, sort_keys=True, default=str),
            "started_at": self.started_at,
            "ended_at": ended,
        }
        return pa.Table.from_pylist([row], schema=RUNS.arrow)

    def save(self, status: str = "running", error: str | None = None) -> None:
        """MERGE this run's row into ``runs`` (insert at start, update at the end)."""
        ended = None if status == "running" else datetime.now(timezone.utc)
        if ended is not None:
            self.metrics.setdefault("wall_seconds", round(time.perf_counter() - self._t0, 3))
        self.tables.merge(RUNS, self._row(status, redact(error, env_secrets(os.environ)) if error else error, ended))
