"""The run ledger: one row in ``runs`` per command, the manifest a run can be replayed from.

A :class:`Run` is opened by the CLI and handed to every stage; stages report
the tables they read and wrote (their Delta versions are looked up here), their
counts (``run.metrics``) and their seeds. The row is written through delta-rs,
so Ray-only commands record runs without starting Spark.
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

from conf import Config
from conf.secrets import env_secrets, redact
from schemas.lakehouse import RUNS

REPO_ROOT = Path(__file__).resolve().parent.parent
TRACKED_PACKAGES = (
    "pyspark", "delta-spark", "deltalake", "pyarrow", "pandas", "numpy", "ray", "torch",
    "sentence-transformers", "transformers", "model2vec", "umap-learn", "hdbscan", "numba",
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


def delta_version(cfg: Config, table: str) -> int | None:
    """Current Delta version of a project table (None when it does not exist), without Spark."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        return DeltaTable(cfg.table_path(table)).version()
    except TableNotFoundError:
        return None


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
        self.seeds.setdefault("project", self.cfg.project.seed)
        self.runtime.update({"python": platform.python_version(), "host": platform.node(), "platform": platform.platform()})
        self._t0 = time.perf_counter()

    def read(self, *tables: str) -> None:
        """Record the Delta version of tables as this run reads them."""
        for table in tables:
            v = delta_version(self.cfg, table)
            if v is not None:
                self.tables_read.setdefault(table, v)

    def wrote(self, *tables: str) -> None:
        """Record the Delta version of tables after this run wrote them."""
        for table in tables:
            v = delta_version(self.cfg, table)
            if v is not None:
                self.tables_written[table] = v

    def record_spark(self, spark: Any) -> None:
        """Add Spark's and Java's versions to the manifest."""
        self.runtime["spark"] = spark.version
        self.runtime["java"] = spark.sparkContext._jvm.System.getProperty("java.version")

    def stage(self, name: str, **numbers: Any) -> None:
        """Add one stage's counts and timings to the run's metrics."""
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
        from deltalake import DeltaTable, write_deltalake
        from deltalake.exceptions import TableNotFoundError

        ended = None if status == "running" else datetime.now(timezone.utc)
        if ended is not None:
            self.metrics.setdefault("wall_seconds", round(time.perf_counter() - self._t0, 3))
        data = self._row(status, redact(error, env_secrets(os.environ)) if error else error, ended)
        path = self.cfg.table_path(RUNS.name)
        try:
            table = DeltaTable(path)
        except TableNotFoundError:
            write_deltalake(path, data, mode="append")
            return
        (
            table.merge(data, predicate="t.run_id = s.run_id", source_alias="s", target_alias="t")
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .execute()
        )


def latest_run_id(cfg: Config, table: str) -> str | None:
    """The newest run id present in a gold table (commands default to the latest run)."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        ids = DeltaTable(cfg.table_path(table)).to_pyarrow_table(columns=["run_id"]).column("run_id").to_pylist()
    except TableNotFoundError:
        return None
    return max(ids) if ids else None
