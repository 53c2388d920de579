"""Killed and stopped runs: the ledger tells the truth, nothing is lost or doubled, silver is never a mix (SYNTHETIC
issues).

The end-to-end test sends real signals to real ``issuerisk`` processes (SIGTERM to
one, SIGKILL to the process group of another, JVM included), then reruns.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from issuerisk.ledger import abandoned_reason, process_start
from tests.github_objects import issue

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
HOST = "this-host"


def row(host=HOST, pid=None, pid_start=None, heartbeat=None, started=NOW):
    runtime = {"host": host}
    if pid is not None:
        runtime.update(pid=str(pid), pid_start=pid_start or "")
    if heartbeat is not None:
        runtime["heartbeat"] = heartbeat.isoformat()
    return {"run_id": "r", "runtime": list(runtime.items()), "started_at": started}


def test_a_running_row_is_abandoned_only_when_its_command_is_gone():
    me = os.getpid()
    assert abandoned_reason(row(pid=me, pid_start=process_start(me)), HOST, NOW, 60) is None
    assert abandoned_reason(row(pid=me, pid_start="1"), HOST, NOW, 60) == f"process {me} on {HOST} is gone", (
        "a reused pid is not the run's process"
    )
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert "is gone" in abandoned_reason(row(pid=gone.pid, pid_start="5"), HOST, NOW, 60)
    fresh, old = NOW - timedelta(seconds=30), NOW - timedelta(seconds=61)
    assert abandoned_reason(row(host="other", pid=1, heartbeat=fresh), HOST, NOW, 60) is None
    assert (
        abandoned_reason(row(host="other", pid=1, heartbeat=old), HOST, NOW, 60)
        == "no heartbeat from other for 61 s (project.stale_run_after_s=60)"
    )
    assert "no heartbeat" in abandoned_reason(row(started=old), HOST, NOW, 60), (
        "a row from before pids were recorded falls back to its start"
    )


def _env(wh: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ISSUERISK")}
    env.update(
        {
            "ISSUERISK_WAREHOUSE": str(wh),
            "ISSUERISK__SPARK__MASTER": "local[2]",
            "ISSUERISK__SPARK__SHUFFLE_PARTITIONS": "2",
            "ISSUERISK__SPARK__DRIVER_MEMORY": "1g",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def _start(wh: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "issuerisk.cli", "--no-progress", *args],
        env=_env(wh),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _cli(wh: Path, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "issuerisk.cli", "--no-progress", *args],
        env=_env(wh),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _runs(lake) -> dict[str, dict]:
    return {r["run_id"]: r for r in lake.read("runs").to_pylist()}


def _wait_running(lake, before: set[str], timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        new = [r for rid, r in _runs(lake).items() if rid not in before and r["status"] == "running"]
        if new:
            return new[0]["run_id"]
        time.sleep(0.2)
    raise AssertionError("the child never recorded a running row")


_MIXED = """
import json, os, signal, sys
from issuerisk.conf import load_config
from issuerisk.lakehouse.spark_session import get_spark
from issuerisk.lakehouse.spark_tables import SparkTables
from issuerisk.schemas.silver import SILVER_REPOSITORIES
cfg = load_config()
tables = SparkTables(get_spark(cfg), cfg)
# The first of the filter's three commits of a new build, then the kill: what a SIGKILL between them leaves.
build = {"silver_build": "killed-build", "bronze_version": 0}
tables.overwrite(SILVER_REPOSITORIES, tables.read(SILVER_REPOSITORIES), build)
os.killpg(os.getpgid(0), signal.SIGKILL)
"""


@pytest.mark.slow
def test_signals_and_kills_leave_a_true_ledger_and_no_mixed_silver(tmp_path):
    from issuerisk.conf import load_config
    from issuerisk.lakehouse import ArrowTables
    from issuerisk.silver import silver_build

    data = tmp_path / "issues.jsonl"
    data.write_text(
        "".join(
            json.dumps(
                issue(
                    "synthetic/kills",
                    n,
                    f"Crash number {n} in training",
                    f"The trainer crashes with a long enough English sentence, case {n}.",
                )
            )
            + "\n"
            for n in range(1, 41)
        )
    )
    wh = tmp_path / "wh"
    lake = ArrowTables(load_config(environ={"ISSUERISK_WAREHOUSE": str(wh)}))

    stopped = _start(wh, "ingest", str(data))
    stopped_id = _wait_running(lake, set())
    stopped.send_signal(signal.SIGTERM)
    _, err = stopped.communicate(timeout=120)
    assert stopped.returncode == 128 + signal.SIGTERM and "interrupted by SIGTERM" in err, err[-3000:]

    killed = _start(wh, "ingest", str(data))
    killed_id = _wait_running(lake, {stopped_id})
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait(timeout=60)
    assert _runs(lake)[killed_id]["status"] == "running", "a SIGKILL leaves its row running until a later command looks"

    done = _cli(wh, "ingest", str(data))
    assert "marked 1 run(s) whose process is gone as abandoned" in done.stderr
    bronze = lake.read("bronze_issues", columns=["number"]).column("number").to_pylist()
    assert sorted(bronze) == list(range(1, 41)), "nothing lost, nothing doubled"

    _cli(wh, "filter")
    build = silver_build(lake)
    mixed = subprocess.run(
        [sys.executable, "-c", _MIXED],
        env=_env(wh),
        capture_output=True,
        text=True,
        timeout=300,
        start_new_session=True,
    )
    assert mixed.returncode == -signal.SIGKILL
    assert lake.commit_metadata("silver_repositories")["silver_build"] == "killed-build"
    summarized = _cli(wh, "summarize")
    assert "come from different filter builds" in summarized.stderr and "rebuilding them first" in summarized.stderr
    rebuilt = silver_build(lake)
    assert rebuilt not in (None, build, "killed-build")
    assert lake.read("silver_summaries").num_rows == lake.read("silver_issues").num_rows == 40

    ledger = _runs(lake)
    assert ledger[stopped_id]["status"] == "failed" and ledger[stopped_id]["error"] == "interrupted by SIGTERM"
    assert ledger[killed_id]["status"] == "abandoned" and "is gone" in ledger[killed_id]["error"]
    assert ledger[killed_id]["ended_at"] is not None
    assert [r["status"] for r in ledger.values()].count("running") == 0
    summarize_run = next(r for r in ledger.values() if r["command"] == "summarize")
    assert set(json.loads(summarize_run["metrics_json"])) >= {"filter", "summarize"}, (
        "the rebuild is part of the summarize run"
    )


def test_a_late_heartbeat_never_writes_running_over_a_final_status(cfg):
    """Two copies of one run's manifest: the run ends, then a heartbeat of the copy wakes (the race of issue 25.5)."""
    from issuerisk.lakehouse import ArrowTables
    from issuerisk.ledger import Run

    run = Run(cfg, "test")
    late = Run(cfg, "test", run_id=run.run_id)
    run.save("running")
    run.save("succeeded")
    late.save("running")
    run.save("running")  # the run's own heartbeat thread, woken after the end
    rows = ArrowTables(cfg).read("runs", where={"run_id": run.run_id}).to_pylist()
    assert [(r["status"], r["ended_at"] is not None) for r in rows] == [("succeeded", True)]


def test_marking_abandoned_keeps_a_status_committed_after_it_read_the_row(cfg):
    """mark_abandoned reads a ``running`` row of a dead process; before it writes, that run commits ``succeeded``."""
    from issuerisk.lakehouse import ArrowTables
    from issuerisk.ledger import Run, mark_abandoned

    gone = Run(cfg, "test")
    gone.runtime["pid"] = str(2**22 + 12345)  # no such process on this host
    gone.save("running")
    finisher = Run(cfg, "test", run_id=gone.run_id)

    class RacingTables(ArrowTables):
        def read(self, table, *args, **kwargs):
            rows = super().read(table, *args, **kwargs)
            if kwargs.get("where") == {"status": "running"}:
                finisher.save("succeeded")  # commits between mark_abandoned's read and its write
            return rows

    assert mark_abandoned(RacingTables(cfg), cfg, by_run="someone-else") == []
    rows = ArrowTables(cfg).read("runs", where={"run_id": gone.run_id}).to_pylist()
    assert [r["status"] for r in rows] == ["succeeded"]


@pytest.mark.slow
def test_concurrent_spark_merges_into_one_table_are_retried_and_all_land(ctx):
    """Three threads of the shared SparkSession MERGE new keys into one unpartitioned Delta table at once: every MERGE
    reads the whole table, so the later commits conflict (ConcurrentAppendException) and must be retried, not lost."""
    from concurrent.futures import ThreadPoolExecutor

    from issuerisk.schemas.silver import SILVER_REPOSITORIES

    spark, tables = ctx.spark, ctx.lake.spark
    columns = SILVER_REPOSITORIES.names
    values = {
        "frameworks": ["pytorch"],
        "framework": "pytorch",
        "framework_source": "given",
        "issues": 1,
        "run_id": "r",
    }
    row = lambda i: tuple(f"org/repo{i}" if c == "repository" else values.get(c) for c in columns)  # noqa: E731
    tables.merge(SILVER_REPOSITORIES, spark.createDataFrame([row(0)], SILVER_REPOSITORIES.spark))

    def write(i: int) -> None:
        tables.merge(SILVER_REPOSITORIES, spark.createDataFrame([row(i)], SILVER_REPOSITORIES.spark))

    with ThreadPoolExecutor(3) as pool:
        list(pool.map(write, range(1, 10)))
    assert sorted(r.repository for r in tables.read(SILVER_REPOSITORIES).collect()) == sorted(
        f"org/repo{i}" for i in range(10)
    )


def test_a_stop_that_a_library_swallowed_still_stops_the_command(ctx, monkeypatch):
    """The signal lands in code that catches everything (a finalizer, a library's broad except): the stage returns,
    and the runner raises the stop instead of going on to the next stage or recording a success."""
    from issuerisk import stage as stage_module
    from issuerisk.stage import Stage, Stopped, execute, request_stop

    monkeypatch.setattr(stage_module, "_STOPS", [])
    seen = []

    def swallowing(ctx):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except BaseException as exc:  # noqa: BLE001 (the library that loses the stop)
            seen.append(type(exc).__name__)
        return {"done": True}

    previous = signal.signal(signal.SIGTERM, request_stop)
    try:
        with pytest.raises(Stopped) as stopped:
            execute(Stage("swallower", "swallows a stop", swallowing), ctx, {})
        with pytest.raises(Stopped):
            execute(Stage("next", "never runs", lambda ctx: seen.append("next")), ctx, {})
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert seen == ["Stopped"] and stopped.value.signum == signal.SIGTERM
