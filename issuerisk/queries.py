"""Commands ``sql`` and ``tables``: ad hoc Spark SQL over the project's Delta tables, and the table listing."""

from __future__ import annotations

import csv
import json
import sys
from typing import Any

from issuerisk.context import Context
from issuerisk.display import table
from issuerisk.schemas import TABLES
from issuerisk.stage import Option, Stage


def sql(ctx: Context, query: str, format: str = "table", limit: int = 1000) -> dict[str, Any]:
    """Run one Spark SQL statement and print its rows as a table, CSV or JSON Lines.

    The project's tables live in the ``{database}`` database, e.g.
    ``SELECT framework, count(*) FROM issuerisk.silver_issues GROUP BY 1``.
    """
    spark = ctx.spark
    spark.catalog.setCurrentDatabase(ctx.cfg.project.database)
    df = spark.sql(query)
    rows = df.limit(limit + 1).collect()
    shown, more = rows[:limit], len(rows) > limit
    columns = df.columns
    if format == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows([list(r) for r in shown])
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
    rows = [[spark_tables.name(spec), spark_tables.read(spec).count(), spark_tables.version(spec), spec.doc] for _, spec in sorted(TABLES.items())]
    table(f"tables in {cfg.project.warehouse}", ["table", "rows", "version", "meaning"], rows)
    return {"tables": len(rows)}


SQL = Stage(
    "sql", "Run Spark SQL on the Delta tables", sql,
    options=(Option(("query",), 'e.g. "SELECT framework, count(*) FROM issuerisk.silver_issues GROUP BY 1"'),
             Option(("--format",), "output format", argparse={"choices": ("table", "csv", "json"), "default": "table"}),
             Option(("--limit",), "rows to print at most", argparse={"type": int, "default": 1000})),
)
TABLES_COMMAND = Stage("tables", "List the tables with row counts and Delta versions", tables)
