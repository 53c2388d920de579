"""Commands ``sql`` and ``tables``: ad hoc Spark SQL over the project's Delta tables, and the table listing.

``sql`` runs on the ``issuerisk serve`` Spark Connect server at ``spark.remote`` when one answers (no JVM
starts here), else on its own SparkSession.
"""

from __future__ import annotations

import csv
import json
import sys
from typing import Any

from issuerisk.context import Context
from issuerisk.display import plain, table
from issuerisk.lakehouse.connect_auth import client_token
from issuerisk.lakehouse.read_only import check_read_only, check_read_only_remote
from issuerisk.schemas import TABLES
from issuerisk.schemas.ledger import RUNS
from issuerisk.stage import Option, Stage


def _session(ctx: Context, query: str, write: bool) -> Any:
    """The SparkSession the statement runs on, after the read-only check unless ``write``: the Connect server's, else
    this process's."""
    from issuerisk.lakehouse.spark_session import remote_session

    remote = remote_session(ctx.cfg)
    if remote is None:
        spark = ctx.spark
        if not write:
            spark.conf.set(
                "spark.sql.runSQLOnFiles", "false"
            )  # a second wall behind the check: no file is a table here
            check_read_only(spark, query)
    else:
        ctx.run.runtime.update({"spark": remote.version, "spark_remote": ctx.cfg.spark.remote or ""})
        if not write:
            check_read_only_remote(ctx.cfg.spark.remote, query, client_token(ctx.cfg))
        spark = remote
    spark.catalog.setCurrentDatabase(ctx.cfg.project.database)
    return spark


def sql(ctx: Context, query: str, format: str = "table", limit: int = 1000, write: bool = False) -> dict[str, Any]:
    """Run one Spark SQL statement and print its rows as a table, CSV or JSON Lines.

    The project's tables live in the ``{database}`` database, e.g.
    ``SELECT framework, count(*) FROM issuerisk.silver_issues GROUP BY 1``. Only read-only
    statements run (:func:`check_read_only`, on the server for Spark Connect) unless ``write`` is set.
    With ``spark.remote`` set and an ``issuerisk serve`` answering there, the statement runs on that
    server and no JVM starts here; otherwise on this process's own SparkSession.

    Raises:
        ReadOnlyError: the statement may change something and ``write`` is not set.
        pyspark.errors.ParseException: the statement is not valid SQL.
    """
    spark = _session(ctx, query, write)
    df = spark.sql(query)
    rows = df.limit(limit + 1).collect()
    shown, more = rows[:limit], len(rows) > limit
    columns = list(rows[0].__fields__) if rows else df.columns  # over Connect, df.columns is one more round trip
    if format == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows([[plain(v) if isinstance(v, str) else v for v in r] for r in shown])
    elif format == "json":
        for r in shown:
            print(json.dumps(r.asDict(recursive=True), default=str))
    else:
        table(query if len(query) < 100 else query[:97] + "...", columns, [list(r) for r in shown])
    if more:
        print(f"(first {limit} rows shown; pass --limit N for more)", file=sys.stderr)
    return {"rows": len(shown), "truncated": more}


def tables(ctx: Context) -> dict[str, Any]:
    """List every table with its meaning, row count and Delta version."""
    spark_tables, cfg = ctx.lake.spark, ctx.cfg
    rows = [
        [spark_tables.name(spec), spark_tables.read(spec).count(), spark_tables.version(spec), spec.doc]
        for _, spec in sorted(TABLES.items())
    ]
    table(f"tables in {cfg.project.warehouse}", ["table", "rows", "version", "meaning"], rows)
    return {"tables": len(rows)}


SQL = Stage(
    "sql",
    "Run read-only Spark SQL on the Delta tables (--write to change them)",
    sql,
    options=(
        Option(("query",), 'e.g. "SELECT framework, count(*) FROM issuerisk.silver_issues GROUP BY 1"'),
        Option(("--format",), "output format", argparse={"choices": ("table", "csv", "json"), "default": "table"}),
        Option(("--limit",), "rows to print at most", argparse={"type": int, "default": 1000}),
        Option(("--write",), "allow statements that change tables", argparse={"action": "store_true"}),
    ),
)
TABLES_COMMAND = Stage("tables", "List the tables with row counts and Delta versions", tables)


HEADLINES = (
    ("ingest", "new_issues", "new"),
    ("filter", "silver", "silver"),
    ("embed", "embedded", "embedded"),
    ("cluster", "clusters", "clusters"),
    ("risk", "graded", "graded"),
)


def headline(metrics: dict[str, Any]) -> str:
    """The counts a reader looks for first, from a run's metrics (the stages it ran)."""
    parts = []
    for stage, key, name in HEADLINES:
        value = (metrics.get(stage) or {}).get(key)
        if isinstance(value, dict):
            value = value.get("all")
        if value is not None:
            parts.append(f"{name} {value}")
    return ", ".join(parts)


def runs(ctx: Context, limit: int = 20, command_filter: str | None = None) -> dict[str, Any]:
    """List the newest runs: id, command, status, duration, inputs (tables and Delta versions read) and headline counts.

    Reads the ledger through delta-rs: no Spark starts.
    """
    rows = ctx.lake.arrow.read(
        RUNS, columns=["run_id", "command", "status", "started_at", "ended_at", "tables_read", "metrics_json", "error"]
    ).to_pylist()
    rows = [
        r for r in rows if r["run_id"] != ctx.run.run_id and (command_filter is None or r["command"] == command_filter)
    ]
    rows.sort(key=lambda r: r["started_at"], reverse=True)
    shown = []
    for r in rows[:limit]:
        seconds = (r["ended_at"] - r["started_at"]).total_seconds() if r["ended_at"] else None
        inputs = ", ".join(f"{t}@v{v}" for t, v in sorted(dict(r["tables_read"] or {}).items()))
        metrics = json.loads(r["metrics_json"] or "{}")
        shown.append(
            [
                r["run_id"],
                r["command"],
                r["status"],
                "" if seconds is None else f"{seconds:,.1f}",
                inputs[:80],
                headline(metrics) or (r["error"] or "")[:60],
            ]
        )
    table(
        f"runs in {ctx.cfg.project.warehouse} (newest first)",
        ["run", "command", "status", "seconds", "inputs (table@version)", "headline"],
        shown,
    )
    return {"runs": len(shown)}


RUNS_COMMAND = Stage(
    "runs",
    "List runs: id, command, status, duration, inputs and headline counts",
    runs,
    options=(
        Option(("--limit",), "runs to list at most", argparse={"type": int, "default": 20}),
        Option(("--command",), "only runs of this command (e.g. run, ingest)", argparse={"dest": "command_filter"}),
    ),
)
