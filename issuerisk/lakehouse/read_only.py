"""Is an ad hoc SQL statement read-only? Decided on Spark's own parsed plan, locally or by an ``issuerisk serve``
server.

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
    [
        _LOGICAL + n
        for n in (
            "Project",
            "Filter",
            "Aggregate",
            "Sort",
            "GlobalLimit",
            "LocalLimit",
            "LimitAll",
            "Offset",
            "Distinct",
            "Join",
            "LateralJoin",
            "Union",
            "Intersect",
            "Except",
            "Generate",
            "Pivot",
            "Unpivot",
            "Sample",
            "SubqueryAlias",
            "UnresolvedWith",
            "WithWindowDefinition",
            "UnresolvedHint",
            "RepartitionByExpression",
            "OneRowRelation",
            "LocalRelation",
        )
    ]
    + [
        _ANALYSIS + n
        for n in (
            "UnresolvedRelation",
            "UnresolvedTableValuedFunction",
            "UnresolvedTVFAliases",
            "UnresolvedInlineTable",
            "UnresolvedSubqueryColumnAliases",
            "UnresolvedHaving",
            "UnresolvedQualify",
            "RelationTimeTravel",
        )
    ]
    + ["org.apache.spark.sql.catalyst.expressions.PipeOperator"]
)
"""The unresolved plan nodes a query (SELECT, WITH, VALUES, TABLE, FROM ..., pipe syntax) parses into."""

READ_ONLY_COMMANDS = frozenset(
    [
        _LOGICAL + n
        for n in (
            "ShowTables",
            "ShowTablesExtended",
            "ShowViews",
            "ShowColumns",
            "ShowFunctions",
            "ShowTableProperties",
            "DescribeRelation",
            "DescribeColumn",
            "DescribeNamespace",
            "DescribeFunction",
        )
    ]
    + [
        _COMMAND + n
        for n in (
            "ShowNamespacesCommand",
            "ShowCatalogsCommand",
            "ShowCurrentNamespaceCommand",
            "DescribeQueryCommand",
            "ExplainCommand",
        )
    ]
    + [_DELTA + n for n in ("DescribeDeltaHistory", "DescribeDeltaDetailCommand")]
    + [
        _ANALYSIS + n
        for n in (
            "CurrentNamespace$",
            "UnresolvedNamespace",
            "UnresolvedTable",
            "UnresolvedTableOrView",
            "UnresolvedFunctionName",
        )
    ]
)
"""SHOW, DESCRIBE and EXPLAIN statements (commands in Spark's plan tree, but they change nothing), with the names they
refer to."""

JAVA_CALLING_FUNCTIONS = frozenset({"reflect", "java_method", "try_reflect"})
FILE_SOURCES = frozenset(
    {
        "text",
        "binaryfile",
        "delta",
        "parquet",
        "json",
        "csv",
        "orc",
        "avro",
        "xml",
        "libsvm",
        "image",
        "jdbc",
        "hive",
        "file",
        "noop",
        "console",
        "rate",
        "socket",
    }
)
"""Data source names that ``source.`path``` reads a path with (``spark.sql.runSQLOnFiles``): never a table of ours."""
MAX_VIEW_DEPTH = 8


class ReadOnlyError(RuntimeError):
    """``issuerisk sql`` was given a statement that may change something, without ``--write``."""


def _scala_seq(seq: Any) -> list[Any]:
    items, iterator = [], seq.iterator()
    while iterator.hasNext():
        items.append(iterator.next())
    return items


def _name_parts(relation: Any) -> list[str]:
    return [str(p) for p in _scala_seq(relation.multipartIdentifier())]


def _view_text(spark: Any, parts: list[str]) -> str | None:
    """The SQL text of the catalog view ``parts`` names, or None (not a view of the session catalog, or no such
    table)."""
    if not 1 <= len(parts) <= 3 or (len(parts) == 3 and parts[0].lower() != "spark_catalog"):
        return None
    jvm, catalog = spark._jvm, spark._jsparkSession.sessionState().catalog()
    database = parts[-2] if len(parts) > 1 else catalog.getCurrentDatabase()
    ident = jvm.org.apache.spark.sql.catalyst.TableIdentifier(
        parts[-1], jvm.scala.Some(database), jvm.scala.Option.empty()
    )
    if not catalog.tableExists(ident):
        return None
    text = catalog.getTableRawMetadata(ident).viewText()
    return str(text.get()) if text.isDefined() else None


def _relation_refusal(relation: Any, spark: Any, depth: int) -> str | None:
    """Why reading this relation is not a read of our tables: a file path (``text.`/etc/passwd```), or a view whose
    definition is not read-only itself."""
    parts = _name_parts(relation)
    if len(parts) >= 2 and parts[0].lower() in FILE_SOURCES or any("/" in p or ":" in p for p in parts):
        return f"it reads the file path {'.'.join(parts)!r} directly; only the catalog's tables can be queried"
    text = None if spark is None else _view_text(spark, parts)
    if text is None:
        return None
    if depth >= MAX_VIEW_DEPTH:
        return f"its view {'.'.join(parts)} nests views more than {MAX_VIEW_DEPTH} deep"
    inner = _refusal(spark._jsparkSession.sessionState().sqlParser().parsePlan(text), spark, depth + 1)
    return f"its view {'.'.join(parts)} is not read-only: {inner}" if inner else None


def _refusal(plan: Any, spark: Any = None, depth: int = 0) -> str | None:
    """Why an unresolved logical plan is not read-only, or None when every node of it is a query or a
    SHOW/DESCRIBE/EXPLAIN
    of the catalog's tables (the views it names checked by their definitions when ``spark`` is given)."""
    pending = [plan]
    while pending:
        node = pending.pop()
        name = node.getClass().getName()
        if name not in QUERY_NODES and name not in READ_ONLY_COMMANDS:
            return (
                f"its plan has {name.rsplit('.', 1)[-1].rstrip('$')}, which is neither a query nor SHOW, DESCRIBE "
                "or EXPLAIN"
            )
        if name == _ANALYSIS + "UnresolvedRelation":
            reason = _relation_refusal(node, spark, depth)
            if reason:
                return reason
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
        pending.extend(
            _scala_seq(node.children()) + _scala_seq(node.innerChildren())
        )  # inner: CTE definitions, subqueries
    return None


def check_read_only(spark: Any, query: str) -> None:
    """Refuse a statement that is not a query, as Spark's own parser (with Delta's extension) reads it.

    Allowed: queries (SELECT, WITH, VALUES, TABLE, FROM ..., pipe syntax, time travel) whose every
    plan node is in :data:`QUERY_NODES`, and the SHOW, DESCRIBE and EXPLAIN statements of
    :data:`READ_ONLY_COMMANDS` (EXPLAIN only of a query). Everything else is refused, including node
    kinds this list does not know yet, ``SELECT TRANSFORM ... USING`` (a shell command), the
    functions that call Java methods (``reflect``, ``java_method``, ``try_reflect``), file paths read as
    tables (``text.`/etc/passwd```, ``binaryFile.`…```, ``delta.`/any/path```) and views whose own definition
    is refused by these rules.

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
    reason = _refusal(plan, spark)
    if reason:
        shown = " ".join(query.split())
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        raise ReadOnlyError(
            f"refused {shown!r}: {reason}; issuerisk sql only reads (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN) unless you "
            "pass --write"
        )


def check_read_only_remote(remote: str, query: str, token: str | None, timeout_s: float = 30.0) -> None:
    """:func:`check_read_only` run by the ``issuerisk serve`` server at ``remote``, on its JVM's parser.

    A Spark Connect client has no parser of its own, and Connect runs a command the moment it
    receives it, so the verdict comes first, from the server's check endpoint (:mod:`issuerisk.serve`).

    Args:
        token: the server's Spark Connect token (:mod:`issuerisk.lakehouse.connect_auth`), sent as a bearer token.

    Raises:
        ReadOnlyError: the statement is not read-only, the server refused the token, or it gave no verdict (nothing runs
        then).
        pyspark.errors.ParseException: the statement is not valid SQL (Spark's own message).
    """
    import urllib.error
    import urllib.request

    from pyspark.errors import ParseException

    url = check_url(remote)
    headers = {"Content-Type": "text/plain; charset=utf-8", **({"Authorization": f"Bearer {token}"} if token else {})}
    request = urllib.request.Request(url, data=query.encode(), method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            raise ReadOnlyError(
                f"the Spark Connect server at {remote} refused this client: "
                f"{'its token is not the server’s' if token else 'it has no token'}. "
                "issuerisk serve writes its token to serve.token_file (~/.config/issuerisk/serve-<port>.token) for the "
                "user "
                "who started it; another user sets ISSUERISK_SERVE_TOKEN"
            ) from None
        raise ReadOnlyError(
            f"the Spark Connect server at {remote} gave no read-only verdict at {url} (HTTP {exc.code}); nothing ran"
        ) from None
    except (OSError, ValueError) as exc:
        raise ReadOnlyError(
            f"the Spark Connect server at {remote} gave no read-only verdict at {url} ({exc}); nothing ran. "
            "Restart issuerisk serve, or set spark.remote to null to use a local Spark"
        ) from None
    if "refused" in answer:
        raise ReadOnlyError(answer["refused"])
    if "parse_error" in answer:
        raise ParseException(message=answer["parse_error"])
    if answer.get("ok") is not True:
        raise ReadOnlyError(
            f"the Spark Connect server at {remote} answered the read-only check with {answer!r}; nothing ran"
        )


def endpoints(remote: str) -> tuple[str, int, int]:
    """Host, Connect port and read-only check port (the next one) of a ``sc://host:port`` URL."""
    parts = urlsplit(remote.replace("sc://", "http://", 1))
    port = parts.port or 15002
    return parts.hostname or "127.0.0.1", port, port + 1


def check_url(remote: str) -> str:
    """Where the server at ``remote`` answers read-only checks."""
    host, _, check_port = endpoints(remote)
    return f"http://{host}:{check_port}{CHECK_PATH}"
