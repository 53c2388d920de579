"""The run ledger: one row in ``runs`` per command, the manifest a run can be replayed from.

A :class:`Run` is opened by the CLI and handed to every stage through the
context; stages report the tables they read and wrote (their Delta versions are
looked up here) and their seeds; the runner records each stage's counts. The
row is written through the lakehouse's Arrow side, so commands without Spark
record runs too.

A command records its host, pid and the pid's start time, and re-saves its row
every ``project.heartbeat_s`` while it runs. A later command marks a ``running``
row ``abandoned`` when its process is gone (same host) or its heartbeat is older
than ``project.stale_run_after_s`` (another host), so a killed run never stays
``running``.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import threading
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
from issuerisk.schemas.ledger import RUNS

REPO_ROOT = Path(__file__).resolve().parent.parent
TRACKED_PACKAGES = (
    "pyspark",
    "delta-spark",
    "deltalake",
    "pyarrow",
    "pandas",
    "numpy",
    "ray",
    "torch",
    "sentence-transformers",
    "transformers",
    "umap-learn",
    "hdbscan",
    "numba",
    "scikit-learn",
    "bertopic",
    "openai",
    "py3langid",
    "cuml-cu12",
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
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return head.stdout.strip() + ("+" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def process_start(pid: int) -> str | None:
    """The start time of a process in clock ticks since boot (Linux ``/proc``), telling a pid from its reuse; None when
    gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return None


def package_versions() -> dict[str, str]:
    versions = {}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else the platform's processor string."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_models() -> str:
    """The GPUs ``nvidia-smi`` lists (name and driver), or "none" on a machine without one."""
    import shutil

    if shutil.which("nvidia-smi") is None:
        return "none"
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return "; ".join(line.strip() for line in out.stdout.splitlines() if line.strip()) or "none"


def machine() -> dict[str, str]:
    """What a run records of the machine it ran on: Python, OS, CPU and GPU models."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "gpu": gpu_models(),
    }


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
        pid = os.getpid()
        self.runtime.update(
            {**machine(), "host": platform.node(), "pid": str(pid), "pid_start": process_start(pid) or ""}
        )
        self._t0 = time.perf_counter()
        self._commit = git_commit()
        self._packages = package_versions()
        self._lock = threading.Lock()
        self._beat: threading.Event | None = None
        self._final = False
        self._stage: str | None = None

    def begin(self, stage: str | None) -> str | None:
        """Attribute the reads and writes that follow to ``stage`` (its metrics' ``tables_read``/``tables_written``);
        return the previous one."""
        previous, self._stage = self._stage, stage
        return previous

    def _note(self, kind: str, table: str, version: int) -> None:
        if self._stage is not None:
            self.metrics.setdefault(self._stage, {}).setdefault(kind, {})[table] = version

    def read(self, *tables: str) -> None:
        """Record the Delta version of tables as this run reads them."""
        for table in tables:
            v = self.tables.version(table)
            if v is not None:
                self.tables_read.setdefault(table, v)
                self._note("tables_read", table, v)

    def wrote(self, *tables: str) -> None:
        """Record the Delta version of tables after this run wrote them."""
        for table in tables:
            v = self.tables.version(table)
            if v is not None:
                self.tables_written[table] = v
                self._note("tables_written", table, v)

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
            "git_commit": self._commit,
            "packages": list(self._packages.items()),
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
        """MERGE this run's row into ``runs`` (insert at start, update at the end); a final status stops the heartbeat.

        ``running`` is compare-and-set: it updates the row only while the row still says ``running``, so a heartbeat
        that wakes as the run ends never writes ``running`` over its final status, in this process or another.
        """
        ended = None if status == "running" else datetime.now(timezone.utc)
        if ended is not None:
            self.metrics.setdefault("wall_seconds", round(time.perf_counter() - self._t0, 3))
            if self._beat is not None:
                self._beat.set()
        with self._lock:
            if ended is None and self._final:
                return
            self.runtime["heartbeat"] = datetime.now(timezone.utc).isoformat()
            self.tables.merge(
                RUNS,
                self._row(status, redact(error, env_secrets(os.environ)) if error else error, ended),
                update_condition=RUNNING if ended is None else None,
            )
            self._final = ended is not None

    def start_heartbeat(self) -> None:
        """Re-save the row every ``project.heartbeat_s`` until a final status is saved (a daemon thread)."""
        self._beat = threading.Event()

        def beat() -> None:
            while not self._beat.wait(self.cfg.project.heartbeat_s):
                try:
                    self.save("running")
                except Exception:  # noqa: BLE001 (a missed heartbeat, e.g. a concurrent commit, is retried at the next one)
                    continue

        threading.Thread(target=beat, name=f"heartbeat-{self.run_id}", daemon=True).start()


RUNNING = "t.status = 'running'"
"""The MERGE condition of a compare-and-set from ``running``: the row is updated only while it still says so."""


def abandoned_reason(row: dict[str, Any], host: str, now: datetime, stale_after_s: float) -> str | None:
    """Why a ``running`` row's command cannot be running any more, or None when it may be.

    Same host: its process is gone (or the pid now belongs to a process started later).
    Another host, or a row without a pid: its last heartbeat (else its start) is older than ``stale_after_s``.
    """
    runtime = dict(row.get("runtime") or {})
    pid, started = runtime.get("pid"), runtime.get("pid_start")
    if runtime.get("host") == host and pid:
        alive = process_start(int(pid))
        if alive is None or (started and alive != started):
            return f"process {pid} on {host} is gone"
        return None
    beat = runtime.get("heartbeat")
    last = datetime.fromisoformat(beat) if beat else row["started_at"]
    age = (now - last).total_seconds()
    if age > stale_after_s:
        return (
            f"no heartbeat from {runtime.get('host') or 'its host'} for {age:,.0f} s "
            f"(project.stale_run_after_s={stale_after_s:g})"
        )
    return None


def mark_abandoned(tables: ArrowTables, cfg: Config, by_run: str) -> list[str]:
    """Mark every ``running`` row whose command is gone as ``abandoned`` (with why); return their run ids."""
    now = datetime.now(timezone.utc)
    host = platform.node()
    rows = tables.read(RUNS, where={"status": "running"}).to_pylist()
    stale = []
    for row in rows:
        reason = None if row["run_id"] == by_run else abandoned_reason(row, host, now, cfg.project.stale_run_after_s)
        if reason is None:
            continue
        beat = dict(row["runtime"] or {}).get("heartbeat")
        row.update(
            status="abandoned",
            error=f"abandoned: {reason} (found by run {by_run})",
            ended_at=datetime.fromisoformat(beat) if beat else now,
        )
        stale.append(row)
    if stale:  # compare-and-set: a row that reached its final status since it was read keeps it
        tables.merge(RUNS, pa.Table.from_pylist(stale, schema=RUNS.arrow), update_condition=RUNNING)
    still = {r["run_id"] for r in tables.read(RUNS, where={"status": "abandoned"}).to_pylist()}
    return [r["run_id"] for r in stale if r["run_id"] in still]
