"""Commands ``sql`` and ``tables``: ad hoc Spark SQL over the project's Delta tables, and the table listing."""

from __future__ import annotations

import csv
import json
import sys
from typing import Any

from issuerisk.context import Context
from issuerisk.display import table
from issuerisk.schemas import TABLES
from issuerisk.schemas.lakehouse import RUNS
from issuerisk.stage import Option, Stage

_LOGICAL = "org.apache.spark.sql.catalyst.plans.logical."
_ANALYSIS = "org.apache.spark.sql.catalyst.analysis."
_COMMAND = "org.apache.spark.sql.execution.command."
_DELTA = "org.apache.spark.sql.delta.commands."

QUERY_NODES = frozenset(
    [_LOGICAL + n for n in ("Project", "Filter", "Aggregate", "Sort", "GlobalLimit", "LocalLimit", "LimitAll", "Offset", "Distinct",
                            "Join", "LateralJoin", "Union", "Intersect", "Except", "Generate", "Pivot", "Unpivot", "Sample",
                            "SubqueryAlias", "UnresolvedWith", "WithWindowDefinition", "UnresolvedHint", "RepartitionByExpression",
                            "OneRowRelation", "LocalRelation")]
    + [_ANALYSIS + n for n in ("UnresolvedRelation", "UnresolvedTableValuedFunction", "UnresolvedTVFAliases", "UnresolvedInlineTable",
                               "UnresolvedSubqueryColumnAliases", "UnresolvedHaving", "UnresolvedQualify", "RelationTimeTravel")]
    + ["org.apache.spark.sql.catalyst.expressions.PipeOperator"]
)
"""The unresolved plan nodes a query (SELECT, WITH, VALUES, TABLE, FROM ..., pipe syntax) parses into."""

READ_ONLY_COMMANDS = frozenset(
    [_LOGICAL + n for n in ("ShowTables", "ShowTablesExtended", "ShowViews", "ShowColumns", "ShowFunctions", "ShowTableProperties",
                            "DescribeRelation", "DescribeColumn", "DescribeNamespace", "DescribeFunction")]
    + [_COMMAND + n for n in ("ShowNamespacesCommand", "ShowCatalogsCommand", "ShowCurrentNamespaceCommand", "DescribeQueryCommand", "ExplainCommand")]
    + [_DELTA + n for n in ("DescribeDeltaHistory", "DescribeDeltaDetailCommand")]
    + [_ANALYSIS + n for n in ("CurrentNamespace$", "UnresolvedNamespace", "UnresolvedTable", "UnresolvedTableOrView", "UnresolvedFunctionName")]
)
"""SHOW, DESCRIBE and EXPLAIN statements (commands in Spark's plan tree, but they change nothing), with the names they refer to."""

JAVA_CALLING_FUNCTIONS = frozenset({"reflect", "java_method", "try_reflect"})


class ReadOnlyError(RuntimeError):
    """``issuerisk sql`` was given a statement that may change something, without ``--write``."""


def _scala_seq(seq: Any) -> list[Any]:
    items, iterator = [], seq.iterator()
    while iterator.hasNext():
        items.append(iterator.next())
    return items


def _refusal(plan: Any) -> str | None:
    """Why an unresolved logical plan is not read-only, or None when every node of it is a query or a SHOW/DESCRIBE/EXPLAIN."""
    pending = [plan]
    while pending:
        node = pending.pop()
        name = node.getClass().getName()
        if name not in QUERY_NODES and name not in READ_ONLY_COMMANDS:
            return f"its plan has {name.rsplit('.', 1)[-1].rstrip('$')}, which is neither a query nor SHOW, DESCRIBE or EXPLAIN"
        if name == _COMMAND + "ExplainCommand":
            pending.append(node.logicalPlan())
        elif name == _COMMAND + "DescribeQueryCommand":
            pending.append(node.plan())
        expressions = _scala_seq(node.expressions())
        while expressions:
            expression = expressions.pop()
            kind = expression.getClass().getSimpleName()
            if kind == "UnresolvedFunction" and str(expression.nameParts().last()).lower() in JAVA_CALLING_FUNCTIONS:
                return f"it calls {str(expression.nameParts().last()).lower()}(), which runs Java methods"
            if kind == "ExpressionWithUnresolvedIdentifier":
                return "it names a function or column through IDENTIFIER(...), which cannot be checked before it runs"
            expressions.extend(_scala_seq(expression.children()))
        pending.extend(_scala_seq(node.children()) + _scala_seq(node.innerChildren()))  # inner: CTE definitions, subqueries
    return None


def check_read_only(spark: Any, query: str) -> None:
    """Refuse a statement that is not a query, as Spark's own parser (with Delta's extension) reads it.

    Allowed: queries (SELECT, WITH, VALUES, TABLE, FROM ..., pipe syntax, time travel) whose every
    plan node is in :data:`QUERY_NODES`, and the SHOW, DESCRIBE and EXPLAIN statements of
    :data:`READ_ONLY_COMMANDS` (EXPLAIN only of a query). Everything else is refused, including node
    kinds this list does not know yet, ``SELECT TRANSFORM ... USING`` (a shell command), and the
    functions that call Java methods (``reflect``, ``java_method``, ``try_reflect``).

    Raises:
        ReadOnlyError: the statement is not read-only (pass ``--write`` to run it anyway).
        pyspark.errors.ParseException: the statement is not valid SQL (Spark's own message).
    """
    from py4j.protocol import Py4JJavaError
    from pyspark.errors.exceptions.captured import convert_exception

    try:
        plan = spark._jsparkSession.sessionState().sqlParser().parsePlan(query)
    except Py4JJavaError as exc:
        raise convert_exception(exc.java_exception) from None
    reason = _refusal(plan)
    if reason:
        shown = " ".join(query.split())
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        raise ReadOnlyError(f"refused {shown!r}: {reason}; issuerisk sql only reads (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN) unless you pass --write")


def sql(ctx: Context, query: str, format: str = "table", limit: int = 1000, write: bool = False) -> dict[str, Any]:
    """Run one Spark SQL statement and print its rows as a table, CSV or JSON Lines.

    The project's tables live in the ``{database}`` database, e.g.
    ``SELECT framework, count(*) FROM issuerisk.silver_issues GROUP BY 1``. Only read-only
    statements run (:func:`check_read_only`) unless ``write`` is set.

    Raises:
        ReadOnlyError: the statement may change something and ``write`` is not set.
        pyspark.errors.ParseException: the statement is not valid SQL.
    """
    spark = ctx.spark
    spark.catalog.setCurrentDatabase(ctx.cfg.project.database)
    if not write:
        check_read_only(spark, query)
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
    "sql", "Run read-only Spark SQL on the Delta tables (--write to change them)", sql,
    options=(Option(("query",), 'e.g. "SELECT framework, count(*) FROM issuerisk.silver_issues GROUP BY 1"'),
             Option(("--format",), "output format", argparse={"choices": ("table", "csv", "json"), "default": "table"}),
             Option(("--limit",), "rows to print at most", argparse={"type": int, "default": 1000}),
             Option(("--write",), "allow statements that change tables", argparse={"action": "store_true"})),
)
TABLES_COMMAND = Stage("tables", "List the tables with row counts and Delta versions", tables)


HEADLINES = (("ingest", "new_issues", "new"), ("filter", "silver", "silver"), ("embed", "embedded", "embedded"),
             ("cluster", "clusters", "clusters"), ("risk", "graded", "graded"))


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
    rows = ctx.lake.arrow.read(RUNS, columns=["run_id", "command", "status", "started_at", "ended_at", "tables_read", "metrics_json", "error"]).to_pylist()
    rows = [r for r in rows if r["run_id"] != ctx.run.run_id and (command_filter is None or r["command"] == command_filter)]
    rows.sort(key=lambda r: r["started_at"], reverse=True)
    shown = []
    for r in rows[:limit]:
        seconds = (r["ended_at"] - r["started_at"]).total_seconds() if r["ended_at"] else None
        inputs = ", ".join(f"{t}@v{v}" for t, v in sorted(dict(r["tables_read"] or {}).items()))
        metrics = json.loads(r["metrics_json"] or "{}")
        shown.append([r["run_id"], r["command"], r["status"], "" if seconds is None else f"{seconds:,.1f}", inputs[:80],
                      headline(metrics) or (r["error"] or "")[:60]])
    table(f"runs in {ctx.cfg.project.warehouse} (newest first)", ["run", "command", "status", "seconds", "inputs (table@version)", "headline"], shown)
    return {"runs": len(shown)}


RUNS_COMMAND = Stage(
    "runs", "List runs: id, command, status, duration, inputs and headline counts", runs,
    options=(Option(("--limit",), "runs to list at most", argparse={"type": int, "default": 20}),
             Option(("--command",), "only runs of this command (e.g. run, ingest)", argparse={"dest": "command_filter"})),
)
