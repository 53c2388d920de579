"""Is an ad hoc SQL statement read-only? Decided on Spark's own parsed plan, locally or by an ``issuerisk serve`` server.

``issuerisk sql`` runs only queries and SHOW/DESCRIBE/EXPLAIN unless ``--write``; a Spark Connect client has
no parser, so it asks the server's check endpoint (the Connect port + 1) first.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

DEFAULT_REMOTE = "sc://127.0.0.1:15002"
CHECK_PATH = "/check"

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


def check_read_only_remote(remote: str, query: str, timeout_s: float = 30.0) -> None:
    """:func:`check_read_only` run by the ``issuerisk serve`` server at ``remote``, on its JVM's parser.

    A Spark Connect client has no parser of its own, and Connect runs a command the moment it
    receives it, so the verdict comes first, from the server's check endpoint (:mod:`issuerisk.serve`).

    Raises:
        ReadOnlyError: the statement is not read-only, or the server gave no verdict (nothing runs then).
        pyspark.errors.ParseException: the statement is not valid SQL (Spark's own message).
    """
    import urllib.error
    import urllib.request

    from pyspark.errors import ParseException

    url = check_url(remote)
    request = urllib.request.Request(url, data=query.encode(), method="POST", headers={"Content-Type": "text/plain; charset=utf-8"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            answer = json.loads(response.read())
    except (OSError, ValueError) as exc:
        raise ReadOnlyError(f"the Spark Connect server at {remote} gave no read-only verdict at {url} ({exc}); nothing ran. "
                            "Restart issuerisk serve, or set spark.remote to null to use a local Spark") from None
    if "refused" in answer:
        raise ReadOnlyError(answer["refused"])
    if "parse_error" in answer:
        raise ParseException(message=answer["parse_error"])
    if answer.get("ok") is not True:
        raise ReadOnlyError(f"the Spark Connect server at {remote} answered the read-only check with {answer!r}; nothing ran")


def endpoints(remote: str) -> tuple[str, int, int]:
    """Host, Connect port and read-only check port (the next one) of a ``sc://host:port`` URL."""
    parts = urlsplit(remote.replace("sc://", "http://", 1))
    port = parts.port or 15002
    return parts.hostname or "127.0.0.1", port, port + 1


def check_url(remote: str) -> str:
    """Where the server at ``remote`` answers read-only checks."""
    host, _, check_port = endpoints(remote)
    return f"http://{host}:{check_port}{CHECK_PATH}"
