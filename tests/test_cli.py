"""The ``issuerisk`` command end to end, each command in a new process, on a small SYNTHETIC fixture.

Separate processes prove that the catalog persists: tables written by ``ingest``
and ``filter`` are found by name by a later ``sql`` process, a table delta-rs
created in this process is queried by name there too, and the tables Spark
created are read by delta-rs here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.github_objects import issue

pytestmark = pytest.mark.slow


def cli(warehouse, *args, check=True):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ISSUERISK")}
    env.update(
        {
            "ISSUERISK_WAREHOUSE": str(warehouse),
            "ISSUERISK__SPARK__MASTER": "local[2]",
            "ISSUERISK__SPARK__SHUFFLE_PARTITIONS": "2",
            "ISSUERISK__SPARK__DRIVER_MEMORY": "1g",
        }
    )
    proc = subprocess.run(
        [sys.executable, "-m", "issuerisk.cli", "--no-progress", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"issuerisk {args} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def test_cli_ingest_filter_sql_in_separate_processes(tmp_path):
    data = tmp_path / "in.jsonl"
    rows = [
        issue(
            "acme/kmodel",
            n,
            f"Keras issue {n}",
            f"model.fit fails with keras.layers.Dense number {n} and a long enough English sentence.",
        )
        for n in range(1, 5)
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows) + "{broken\n")
    wh = tmp_path / "wh"

    from issuerisk.conf import load_config
    from issuerisk.lakehouse import ArrowTables
    from tests.test_lakehouse import topics

    lake = ArrowTables(load_config(environ={"ISSUERISK_WAREHOUSE": str(wh)}))
    lake.merge("gold_topics", topics("r0", {0: "made by delta-rs"}))

    out = cli(wh, "ingest", str(data), "--framework", "keras").stdout
    assert "4" in out and "rejected" in out
    assert sorted(lake.read("bronze_issues", columns=["number"]).column("number").to_pylist()) == [1, 2, 3, 4]
    made_by_rs = cli(wh, "sql", "SELECT run_id, label FROM issuerisk.gold_topics", "--format", "json")
    assert [json.loads(line) for line in made_by_rs.stdout.splitlines()] == [
        {"run_id": "r0", "label": "made by delta-rs"}
    ]
    cli(wh, "filter")
    res = cli(wh, "sql", "SELECT framework, count(*) AS n FROM issuerisk.silver_issues GROUP BY 1", "--format", "json")
    assert [json.loads(line) for line in res.stdout.splitlines()] == [{"framework": "keras", "n": 4}]

    runs = cli(
        wh,
        "sql",
        "SELECT command, status, config_hash, git_commit, packages['pyspark'] AS spark_pkg, tables_written FROM "
        "issuerisk.runs ORDER BY started_at",
        "--format",
        "json",
    )
    ledger = [json.loads(line) for line in runs.stdout.splitlines()]
    assert [r["command"] for r in ledger[:4]] == ["ingest", "sql", "filter", "sql"]
    assert ledger[0]["status"] == "succeeded" and len(ledger[0]["config_hash"]) == 64
    assert ledger[0]["spark_pkg"] == "4.2.0" and "bronze_issues" in ledger[0]["tables_written"]

    bad = cli(wh, "sql", "SELECT * FROM issuerisk.no_such_table", check=False)
    assert bad.returncode == 1 and "no_such_table" in bad.stderr
    failed = cli(
        wh, "sql", "SELECT status, error FROM issuerisk.runs WHERE status = 'failed'", "--format", "csv"
    ).stdout
    assert "no_such_table" in failed
