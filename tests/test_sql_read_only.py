"""``issuerisk sql`` is read-only unless ``--write``: Spark's own parser decides, every statement kind checked."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from issuerisk.lakehouse.read_only import ReadOnlyError, check_read_only
from issuerisk.queries import sql

pytestmark = pytest.mark.slow

READ_ONLY = [
    "SELECT a, b FROM t WHERE a > 1 ORDER BY a LIMIT 5",
    "SELECT 1;",
    "WITH x AS (SELECT * FROM t) SELECT b, count(*) FROM x GROUP BY b HAVING count(*) > 0",
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT * FROM r",
    "VALUES (1, 'x'), (2, 'y')",
    "SELECT * FROM VALUES (1 + 1, current_date()) AS v(x, d)",
    "SELECT * FROM t LIMIT ALL",
    "TABLE t",
    "FROM t SELECT a",
    "SELECT * FROM t |> WHERE a > 1 |> AGGREGATE count(*) AS n",
    "SELECT * FROM t VERSION AS OF 0",
    "SELECT * FROM t WHERE a IN (SELECT a FROM t) AND EXISTS (SELECT 1) AND a < (SELECT max(a) FROM t)",
    "SELECT x.a, y.b FROM t x JOIN t y USING (a) LEFT JOIN t z ON z.a = x.a, LATERAL (SELECT x.a + 1 AS c)",
    "SELECT a, row_number() OVER w AS k FROM t WINDOW w AS (PARTITION BY b ORDER BY a) QUALIFY k = 1",
    "SELECT * FROM t PIVOT (count(*) FOR b IN ('x', 'y'))",
    "SELECT * FROM t UNPIVOT (v FOR k IN (a))",
    "SELECT a, e FROM t LATERAL VIEW explode(array(1, 2)) AS e",
    "SELECT a FROM t UNION SELECT a FROM t INTERSECT SELECT 1 EXCEPT SELECT 2",
    "SELECT /*+ REPARTITION(2) */ DISTINCT a FROM t TABLESAMPLE (50 PERCENT) ORDER BY a LIMIT 3 OFFSET 1",
    "SELECT * FROM range(3) AS r(id) CROSS JOIN VALUES (1) AS v(x)",
    "SELECT * FROM t DISTRIBUTE BY a SORT BY a",
    "SHOW TABLES",
    "SHOW TABLES IN {db}",
    "SHOW TABLE EXTENDED LIKE 't'",
    "SHOW VIEWS",
    "SHOW DATABASES",
    "SHOW SCHEMAS LIKE '{db}'",
    "SHOW COLUMNS IN t",
    "SHOW FUNCTIONS LIKE 'upper'",
    "SHOW TBLPROPERTIES t",
    "SHOW CATALOGS",
    "SHOW CURRENT SCHEMA",
    "DESCRIBE t",
    "DESCRIBE TABLE EXTENDED t",
    "DESCRIBE t a",
    "DESCRIBE DATABASE {db}",
    "DESCRIBE FUNCTION EXTENDED upper",
    "DESCRIBE QUERY SELECT a FROM t",
    "DESCRIBE HISTORY t",
    "DESCRIBE DETAIL t",
    "EXPLAIN SELECT * FROM t",
    "EXPLAIN EXTENDED SELECT a, count(*) FROM t GROUP BY a",
    "EXPLAIN FORMATTED SELECT 1",
    "EXPLAIN COST SELECT * FROM t",
    "EXPLAIN CODEGEN SELECT a FROM t",
]

REFUSED = [
    ("DELETE FROM issuerisk.bronze_rejects WHERE true", "DeleteFromTable"),
    ("UPDATE t SET a = 2", "UpdateTable"),
    ("MERGE INTO t USING t s ON t.a = s.a WHEN MATCHED THEN DELETE", "MergeIntoTable"),
    ("INSERT INTO t VALUES (1, 'x')", "InsertIntoStatement"),
    ("INSERT OVERWRITE t SELECT * FROM t", "InsertIntoStatement"),
    ("WITH x AS (SELECT * FROM t) INSERT INTO t SELECT * FROM x", "InsertIntoStatement"),
    ("CREATE TABLE u AS SELECT 1", "CreateTableAsSelect"),
    ("CREATE TABLE u (a INT) USING delta", "CreateTable"),
    ("CREATE VIEW v AS SELECT 1", "CreateView"),
    ("CREATE TEMPORARY VIEW v AS SELECT 1", "CreateViewCommand"),
    ("CREATE FUNCTION f AS 'x.Y'", "CreateFunction"),
    ("DROP TABLE t", "DropTable"),
    ("ALTER TABLE t ADD COLUMNS (c INT)", "AddColumns"),
    ("TRUNCATE TABLE t", "TruncateTable"),
    ("SET spark.sql.shuffle.partitions = 3", "SetCommand"),
    ("RESET", "ResetCommand"),
    ("USE default", "SetCatalogAndNamespace"),
    ("DECLARE VARIABLE v INT", "CreateVariable"),
    ("CACHE TABLE t", "CacheTable"),
    ("CACHE TABLE c AS SELECT 1", "CacheTableAsSelect"),
    ("UNCACHE TABLE t", "UncacheTable"),
    ("REFRESH TABLE t", "RefreshTable"),
    ("CLEAR CACHE", "ClearCacheCommand"),
    ("ADD JAR /tmp/x.jar", "AddJarsCommand"),
    ("ANALYZE TABLE t COMPUTE STATISTICS", "AnalyzeTable"),
    ("MSCK REPAIR TABLE t", "RepairTable"),
    ("VACUUM t RETAIN 0 HOURS", "VacuumTableCommand"),
    ("OPTIMIZE t", "OptimizeTableCommand"),
    ("RESTORE TABLE t TO VERSION AS OF 0", "RestoreTableStatement"),
    ("CONVERT TO DELTA parquet.`/tmp/x`", "ConvertToDeltaCommand"),
    ("GENERATE symlink_format_manifest FOR TABLE t", "DeltaGenerateCommand"),
    ("CALL sys.x()", "Call"),
    ("BEGIN DELETE FROM t; END", "CompoundBody"),
    ("EXECUTE IMMEDIATE 'DELETE FROM t'", "UnresolvedExecuteImmediate"),
    ("EXPLAIN DELETE FROM t", "DeleteFromTable"),
    ("DESCRIBE QUERY SELECT TRANSFORM(a) USING 'cat' FROM t", "ScriptTransformation"),
    ("SELECT TRANSFORM(a) USING 'touch /tmp/pwned' FROM t", "ScriptTransformation"),
    ("SELECT reflect('java.lang.System', 'setProperty', 'k', 'v')", "reflect()"),
    ("SELECT * FROM t WHERE a IN (SELECT java_method('java.lang.System', 'exit', 0))", "java_method()"),
    ("WITH x AS (SELECT try_reflect('java.lang.System', 'exit', 0)) SELECT * FROM x", "try_reflect()"),
    ("SELECT IDENTIFIER('reflect')('java.lang.System', 'exit', 0)", "IDENTIFIER"),
    ("SELECT * FROM text.`/etc/passwd`", "the file path"),
    ("SELECT content FROM binaryFile.`/root/.ssh/id_rsa`", "the file path"),
    ("SELECT * FROM t JOIN delta.`/any/path` USING (a)", "the file path"),
    ("SELECT * FROM parquet.`hdfs://nn/x`", "the file path"),
]


@pytest.mark.parametrize(("query", "node"), REFUSED, ids=[q for q, _ in REFUSED])
def test_statements_that_may_change_something_are_refused(spark, query, node):
    with pytest.raises(
        ReadOnlyError,
        match=r"^refused .*" + node.replace("(", r"\(").replace(")", r"\)") + r".*unless you pass --write$",
    ):
        check_read_only(spark, query)


def test_the_readme_examples_are_read_only(spark):
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    examples = re.findall(r"```sql\n(.*?)```", readme, re.S) + re.findall(
        r'bin/issuerisk sql "([^"]+)"(?![^\n]*--write)', readme
    )
    assert len(examples) >= 4
    for query in examples:
        check_read_only(spark, query)


def test_syntax_errors_and_a_second_statement_keep_sparks_parse_error(spark):
    from pyspark.errors import ParseException

    with pytest.raises(ParseException, match=r"PARSE_SYNTAX_ERROR.*'SELEC'"):
        check_read_only(spark, "SELEC 1")
    with pytest.raises(ParseException, match="PARSE_SYNTAX_ERROR"):
        check_read_only(spark, "SELECT 1; DELETE FROM t")


def _plan_classes(spark, query):
    """Every class name in the parsed plan of ``query`` (EXPLAIN's and DESCRIBE QUERY's inner plans too)."""
    from issuerisk.lakehouse.read_only import _scala_seq

    seen, pending = set(), [spark._jsparkSession.sessionState().sqlParser().parsePlan(query)]
    while pending:
        node = pending.pop()
        seen.add(node.getClass().getName())
        inner = {"ExplainCommand": "logicalPlan", "DescribeQueryCommand": "plan"}.get(node.getClass().getSimpleName())
        if inner:
            pending.append(getattr(node, inner)())
        pending.extend(_scala_seq(node.children()) + _scala_seq(node.innerChildren()))
    return seen


def test_every_allowed_plan_node_is_exercised_by_a_read_only_form(spark):
    from issuerisk.lakehouse.read_only import QUERY_NODES, READ_ONLY_COMMANDS

    seen = set().union(*(_plan_classes(spark, q.format(db="d")) for q in READ_ONLY))
    assert (QUERY_NODES | READ_ONLY_COMMANDS) - seen == set()


@pytest.fixture
def table_t(ctx):
    spark = ctx.spark
    db = ctx.cfg.project.database
    spark.sql(f"CREATE TABLE {db}.t (a INT, b STRING) USING delta")
    spark.sql(f"INSERT INTO {db}.t VALUES (1, 'x'), (2, 'y'), (3, 'x')")
    return db


def _version(spark, db):
    return spark.sql(f"DESCRIBE HISTORY {db}.t").agg({"version": "max"}).first()[0]


def test_every_read_only_form_runs_and_writes_nothing(ctx, table_t, capsys):
    before = _version(ctx.spark, table_t)
    failed = []
    for query in READ_ONLY:
        try:
            sql(ctx, query.format(db=table_t), format="json")
        except Exception as exc:  # noqa: BLE001 (collect every failing form, then report them all)
            failed.append(f"{query}: {type(exc).__name__}: {str(exc)[:300]}")
    assert not failed, "\n".join(failed)
    assert _version(ctx.spark, table_t) == before
    out = capsys.readouterr().out
    assert '"tableName": "t"' in out and '"col_name": "a"' in out and '"operation": "WRITE"' in out


def test_delete_is_refused_unless_write_is_given(ctx, table_t, capsys):
    with pytest.raises(
        ReadOnlyError, match=r"^refused 'DELETE FROM t WHERE a = 1': its plan has DeleteFromTable, .*--write"
    ):
        sql(ctx, "DELETE FROM t WHERE a = 1")
    assert ctx.spark.table(f"{table_t}.t").count() == 3
    sql(ctx, "DELETE FROM t WHERE a = 1", write=True)
    assert sorted(r.a for r in ctx.spark.table(f"{table_t}.t").collect()) == [2, 3]


def test_write_is_a_flag_of_the_sql_command():
    from issuerisk.cli import build_parser, commands

    parser = build_parser(commands())
    assert parser.parse_args(["sql", "DELETE FROM t", "--write"]).write is True
    assert parser.parse_args(["sql", "SELECT 1"]).write is False


def test_the_cli_refuses_a_delete_and_says_to_pass_write(tmp_path):
    from tests.test_cli import cli

    proc = cli(tmp_path / "wh", "sql", "DELETE FROM issuerisk.bronze_rejects WHERE true", check=False)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert (
        "issuerisk sql: ReadOnlyError: refused 'DELETE FROM issuerisk.bronze_rejects WHERE true': its plan has "
        "DeleteFromTable, "
        "which is neither a query nor SHOW, DESCRIBE or EXPLAIN; issuerisk sql only reads (SELECT, WITH, SHOW, "
        "DESCRIBE, EXPLAIN) "
        "unless you pass --write"
    ) in proc.stderr
