"""The lakehouse layer: both sides create tables from their spec and MERGE by key alike (SYNTHETIC rows).

Cross-process readability (a delta-rs table queried by name from a later Spark
process, a Spark table read by delta-rs) is in ``tests/test_cli.py``.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timezone

import pyarrow as pa
import pytest

from issuerisk.conf import load_config
from issuerisk.lakehouse import ArrowTables, TableVersionError
from issuerisk.lakehouse.arrow_tables import check_merge, spec_of
from issuerisk.schemas.bronze import BRONZE_REPOS
from issuerisk.schemas.gold import GOLD_TOPICS

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def topics(run_id: str, clusters: dict[int, str]) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "run_id": run_id,
                "cluster": c,
                "label": label,
                "keywords": [label],
                "weights": [1.0],
                "representative": [],
                "n": 3,
            }
            for c, label in clusters.items()
        ],
        schema=GOLD_TOPICS.arrow,
    )


def repos(stars: dict[str, int], run_id: str = "r") -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "repository": name,
                "frameworks": ["keras"],
                "stars": n,
                "description": None,
                "language": "Python",
                "topics": [],
                "has_issues": True,
                "created_at": NOW,
                "pushed_at": NOW,
                "excluded_reason": None,
                "run_id": run_id,
                "discovered_at": NOW,
            }
            for name, n in stars.items()
        ],
        schema=BRONZE_REPOS.arrow,
    )


def by_key(table: pa.Table, *key: str) -> dict:
    return {tuple(r[k] for k in key): r for r in table.to_pylist()}


def test_merge_requests_are_checked_the_same_way_for_both_sides():
    with pytest.raises(ValueError, match="how='overwrite' is unknown"):
        check_merge(GOLD_TOPICS, "overwrite", None)
    with pytest.raises(ValueError, match="needs the run id"):
        check_merge(GOLD_TOPICS, "replace_run", None)
    with pytest.raises(ValueError, match="bronze_repos is not keyed by run_id"):
        check_merge(BRONZE_REPOS, "replace_run", "r1")
    with pytest.raises(KeyError, match="no table 'gold_nothing'"):
        spec_of("gold_nothing")


def test_arrow_side_creates_from_the_spec_and_merges_three_ways(cfg):
    tables = ArrowTables(cfg)
    assert not tables.exists(GOLD_TOPICS) and tables.read(GOLD_TOPICS).num_rows == 0
    tables.create(GOLD_TOPICS)
    assert tables.version(GOLD_TOPICS) == 0
    from deltalake import DeltaTable

    schema = DeltaTable(tables.path(GOLD_TOPICS)).schema().to_arrow()
    assert (
        schema.names == GOLD_TOPICS.names
        and schema.field("cluster").metadata[b"comment"] == b"Cluster id from gold_clusters."
    )

    tables.merge(GOLD_TOPICS, topics("r1", {0: "a", 1: "b", 2: "c"}))
    tables.merge(GOLD_TOPICS, topics("r2", {0: "x"}))
    tables.merge(GOLD_TOPICS, topics("r1", {1: "b2", 3: "d"}), how="replace_run", run_id="r1")
    rows = by_key(tables.read(GOLD_TOPICS), "run_id", "cluster")
    assert {k: r["label"] for k, r in rows.items()} == {("r1", 1): "b2", ("r1", 3): "d", ("r2", 0): "x"}

    tables.merge(BRONZE_REPOS, repos({"o/a": 5, "o/b": 7}))
    tables.merge(BRONZE_REPOS, repos({"o/a": 50, "o/c": 1}), how="insert")
    stars = {k[0]: r["stars"] for k, r in by_key(tables.read(BRONZE_REPOS), "repository").items()}
    assert stars == {"o/a": 5, "o/b": 7, "o/c": 1}, "insert never touches an existing key"
    tables.merge(BRONZE_REPOS, repos({"o/a": 50, "o/b": 3}), update_condition="s.stars > t.stars")
    stars = {k[0]: r["stars"] for k, r in by_key(tables.read(BRONZE_REPOS), "repository").items()}
    assert stars == {"o/a": 50, "o/b": 7, "o/c": 1}, "upsert updates only where the condition holds"

    with pytest.raises(ValueError, match="lack columns \\['n'\\]"):
        tables.merge(GOLD_TOPICS, topics("r3", {0: "y"}).drop_columns(["n"]))


def test_arrow_side_time_travel_and_a_missing_version(cfg):
    tables = ArrowTables(cfg)
    tables.merge(GOLD_TOPICS, topics("r1", {0: "a"}))
    tables.merge(GOLD_TOPICS, topics("r1", {0: "b"}))
    assert tables.read(GOLD_TOPICS, version=1).column("label").to_pylist() == ["a"]
    assert tables.read(GOLD_TOPICS).column("label").to_pylist() == ["b"]
    with pytest.raises(TableVersionError, match="gold_topics version 9 cannot be read"):
        tables.read(GOLD_TOPICS, version=9)


@pytest.mark.slow
def test_spark_side_merges_like_the_arrow_side_and_each_reads_the_other(ctx):
    spark_tables, arrow = ctx.lake.spark, ctx.lake.arrow
    spark = spark_tables.spark
    spark_tables.merge(
        GOLD_TOPICS, spark.createDataFrame(topics("r1", {0: "a", 1: "b"}).to_pylist(), GOLD_TOPICS.spark)
    )
    arrow.merge(GOLD_TOPICS, topics("r2", {0: "x"}))
    spark_tables.merge(
        GOLD_TOPICS,
        spark.createDataFrame(topics("r1", {1: "b2"}).to_pylist(), GOLD_TOPICS.spark),
        how="replace_run",
        run_id="r1",
    )
    got = {(r.run_id, r.cluster): r.label for r in spark_tables.read(GOLD_TOPICS).collect()}
    assert got == {("r1", 1): "b2", ("r2", 0): "x"}
    assert {(r["run_id"], r["cluster"]): r["label"] for r in arrow.read(GOLD_TOPICS).to_pylist()} == got

    arrow.merge(BRONZE_REPOS, repos({"o/a": 5}))
    spark_tables.merge(
        BRONZE_REPOS, spark.createDataFrame(repos({"o/a": 9, "o/b": 1}).to_pylist(), BRONZE_REPOS.spark), how="insert"
    )
    assert {r.repository: r.stars for r in spark_tables.read(BRONZE_REPOS).collect()} == {"o/a": 5, "o/b": 1}
    assert spark_tables.read(GOLD_TOPICS, version=0).count() == 0
    with pytest.raises(TableVersionError, match="gold_topics version 99 cannot be read"):
        spark_tables.read(GOLD_TOPICS, version=99)


def _older(spec, drop):
    """The spec as an earlier release declared it: without the (nullable) columns ``drop``."""
    from issuerisk.schemas import TableSpec

    return TableSpec(
        name=spec.name, doc=spec.doc, columns=tuple(c for c in spec.columns if c.name not in drop), key=spec.key
    )


def test_a_table_written_before_its_spec_grew_gets_the_new_columns(cfg):
    tables = ArrowTables(cfg)
    old = _older(BRONZE_REPOS, ("topics", "excluded_reason"))
    tables.merge(old, repos({"o/a": 5}).select(old.names))
    assert tables.read(old).column_names == old.names
    tables.merge(BRONZE_REPOS, repos({"o/b": 6}))
    got = by_key(tables.read(BRONZE_REPOS), "repository")
    assert tables.read(BRONZE_REPOS).column_names == BRONZE_REPOS.names
    assert got[("o/a",)]["topics"] is None and got[("o/b",)]["topics"] == []
    from issuerisk.lakehouse.arrow_tables import new_columns

    with pytest.raises(ValueError, match="lacks columns \\['run_id'\\] that are declared NOT NULL"):
        new_columns(BRONZE_REPOS, [n for n in BRONZE_REPOS.names if n != "run_id"])


@pytest.mark.slow
def test_spark_adds_new_columns_to_an_older_table_too(ctx):
    old = _older(GOLD_TOPICS, ("representative", "n"))
    ctx.lake.arrow.merge(old, topics("r1", {0: "a"}).select(old.names))
    frame = ctx.lake.spark.read(GOLD_TOPICS)
    assert frame.columns == GOLD_TOPICS.names and frame.first()["n"] is None


def test_reading_an_older_table_gives_the_new_columns_as_null_without_writing(cfg):
    tables = ArrowTables(cfg)
    old = _older(GOLD_TOPICS, ("representative", "n"))
    tables.merge(old, topics("r1", {0: "a"}).select(old.names))
    version = tables.version(GOLD_TOPICS)
    rows = tables.read(GOLD_TOPICS)
    assert rows.column_names == GOLD_TOPICS.names and rows.column("n").to_pylist() == [None]
    assert tables.version(GOLD_TOPICS) == version


def test_commands_starting_at_once_on_a_fresh_warehouse_all_record_their_runs(tmp_path):
    """Four commands writing the ``runs`` table at the same instant: the losers of each commit race repeat their
    MERGE."""
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "issuerisk.cli",
                "--warehouse",
                str(tmp_path),
                "--no-progress",
                "runs",
                "--limit",
                "1",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    assert all(rc == 0 for rc, _ in results), [err[-500:] for rc, err in results if rc]
    runs = ArrowTables(load_config(environ={"ISSUERISK_WAREHOUSE": str(tmp_path)})).read("runs").to_pylist()
    assert len(runs) == 4 and {r["status"] for r in runs} == {"succeeded"}


def test_tables_registered_in_the_background_while_a_stage_creates_its_own(cfg, spark):
    """``run`` registers every table in a thread (delta-rs creates the missing ones first) while stages create
    theirs."""
    from issuerisk.lakehouse import Lakehouse
    from issuerisk.schemas import TABLES
    from issuerisk.schemas.silver import SILVER_ISSUES

    spark.sql(
        f"CREATE DATABASE IF NOT EXISTS {cfg.project.database} LOCATION "
        f"'{cfg.project.warehouse}/{cfg.project.database}.db'"
    )
    lake = Lakehouse(cfg, lambda: spark)
    lake.start_spark(register_in_background=True)
    assert all(lake.arrow.exists(spec) for spec in TABLES.values())
    assert lake.spark.read(SILVER_ISSUES).count() == 0  # a stage's own table, under the same lock
    lake.registered()
    names = {r.tableName for r in spark.sql(f"SHOW TABLES IN {cfg.project.database}").collect()}
    assert names >= set(TABLES)
