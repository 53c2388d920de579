"""The only code that creates, merges into and versions Delta tables from Spark.

Tables are created from their :mod:`schemas` spec and registered in the
project's database, so Spark SQL finds them in any later process. Writes are
MERGEs on the spec's key, so a rerun is idempotent.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from conf import Config
from schemas import TABLES, TableSpec


def qualified(cfg: Config, name: str) -> str:
    """``database.table`` for SQL."""
    return f"{cfg.project.database}.{name}"


def _has_delta_log(spark: SparkSession, path: str) -> bool:
    jvm = spark.sparkContext._jvm
    hpath = jvm.org.apache.hadoop.fs.Path(f"{path}/_delta_log")
    fs = hpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    return bool(fs.exists(hpath))


def ensure_table(spark: SparkSession, cfg: Config, spec: TableSpec) -> str:
    """Create the table (or register an existing Delta folder) in the catalog; return its SQL name."""
    name = qualified(cfg, spec.name)
    if spark.catalog.tableExists(name):
        return name
    path = cfg.table_path(spec.name)
    if _has_delta_log(spark, path):
        spark.sql(f"CREATE TABLE IF NOT EXISTS {name} USING delta LOCATION '{path}'")
    else:
        partition = f"PARTITIONED BY ({', '.join(spec.partition_by)})" if spec.partition_by else ""
        spark.sql(
            f"CREATE TABLE IF NOT EXISTS {name} (\n  {spec.ddl()}\n) USING delta {partition} "
            f"LOCATION '{path}' COMMENT '{spec.doc.replace(chr(39), chr(92) + chr(39))}'"
        )
    return name


def ensure_tables(spark: SparkSession, cfg: Config, names: list[str] | None = None) -> None:
    """Create every registered table (or the named ones) that does not exist yet."""
    for name in names or sorted(TABLES):
        ensure_table(spark, cfg, TABLES[name])


def conform(df: DataFrame, spec: TableSpec) -> DataFrame:
    """Select the spec's columns in order with their declared types.

    Raises:
        ValueError: a column of the spec is missing from ``df``.
    """
    missing = [c for c in spec.names if c not in df.columns]
    if missing:
        raise ValueError(f"cannot write {spec.name}: the frame lacks columns {missing}")
    return df.select([df[f.name].cast(f.dataType).alias(f.name) for f in spec.spark.fields])


def merge(spark: SparkSession, cfg: Config, spec: TableSpec, df: DataFrame, update_condition: str | None = None) -> None:
    """MERGE ``df`` into the table on the spec's key: update matches (when ``update_condition`` holds), insert the rest.

    With an ``update_condition``, source rows whose match it rejects are dropped first (an
    anti-join on the key and the condition), so a rerun of unchanged input rewrites no file
    and commits no version. This takes the key to be unique in the target, as every write
    to these tables is this MERGE of a source with one row per key.

    Into a table without data files the MERGE has inserts only, and says so: Delta then
    runs it in one pass without first copying the source to local disk. It still joins
    the source to the target's snapshot, so rows a writer added meanwhile are not inserted
    twice, and a concurrent commit fails it with a conflict, as for any MERGE. The file
    count comes from the Delta log (:func:`data_files`), so no data is read.

    Args:
        update_condition: SQL on aliases ``t`` (target) and ``s`` (source), e.g.
            ``"s.updated_at > t.updated_at"``; None updates every match.
    """
    from delta.tables import DeltaTable

    ensure_table(spark, cfg, spec)
    target = DeltaTable.forName(spark, qualified(cfg, spec.name))
    on = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in spec.key)
    source = conform(df, spec)
    existing = data_files(spark, cfg, spec.name, target)
    if existing and update_condition is not None:
        # Delta rewrites every target file that holds a key match, also where the update condition
        # is false (delta-io/delta#1812): only source rows that insert or update go in.
        source = source.alias("s").join(target.toDF().alias("t"), F.expr(f"{on} AND NOT coalesce({update_condition}, false)"), "left_anti")
    builder = target.alias("t").merge(source.alias("s"), on)
    if existing:
        builder = builder.whenMatchedUpdateAll(condition=update_condition)
    builder.whenNotMatchedInsertAll().execute()


def overwrite(spark: SparkSession, cfg: Config, spec: TableSpec, df: DataFrame) -> None:
    """Replace the table's content (for tables that are rebuilt whole from their inputs, e.g. silver)."""
    ensure_table(spark, cfg, spec)
    conform(df, spec).write.format("delta").mode("overwrite").save(cfg.table_path(spec.name))


def overwrite_all(spark: SparkSession, cfg: Config, frames: list[tuple[TableSpec, DataFrame]]) -> None:
    """:func:`overwrite` several tables at once, one thread each.

    Each write's driver-side work (planning, Delta's log replay and commit) is serial,
    so the writes overlap it with each other's tasks. Every table is its own Delta
    transaction: when one write fails the others still land, and the first error is raised.
    """
    with ThreadPoolExecutor(max_workers=len(frames), thread_name_prefix="overwrite") as pool:
        for future in [pool.submit(overwrite, spark, cfg, spec, df) for spec, df in frames]:
            future.result()


def read(spark: SparkSession, cfg: Config, name: str) -> DataFrame:
    """Read a project table by name (created empty when missing)."""
    ensure_table(spark, cfg, TABLES[name])
    return spark.table(qualified(cfg, name))


def _file_records(cfg: Config, name: str) -> tuple[list[int | None], bool] | None:
    """(records per data file from the Delta log's statistics, deletion vectors possible) through
    delta-rs, without Spark; [] for a table not created yet, None where delta-rs cannot read the log
    (e.g. a storage scheme it lacks)."""
    import pyarrow as pa
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        table = DeltaTable(cfg.table_path(name))
        records = pa.table(table.get_add_actions(flatten=True)).column("num_records").to_pylist()
        return records, "deletionVectors" in set(table.protocol().writer_features or [])
    except TableNotFoundError:
        return [], False
    except Exception:  # noqa: BLE001 (any failure of delta-rs leaves the answer to Spark)
        return None


def row_count(spark: SparkSession, cfg: Config, name: str) -> int:
    """Rows of a project table from the Delta log's per-file statistics, without a Spark job.

    Falls back to a Spark count when the log cannot say: files without statistics,
    deletion vectors (rows deleted in place still count in a file's statistics) or a
    location delta-rs cannot open.
    """
    log = _file_records(cfg, name)
    if log is not None and None not in log[0] and not log[1]:
        return int(sum(log[0]))
    return read(spark, cfg, name).count()


def data_files(spark: SparkSession, cfg: Config, name: str, target: Any = None) -> int:
    """Data files in a project table's current version: from the Delta log through delta-rs, without
    Spark; else from Spark's ``DESCRIBE DETAIL`` (of ``target``, a loaded ``DeltaTable``, when given)."""
    log = _file_records(cfg, name)
    if log is not None:
        return len(log[0])
    if target is None:
        from delta.tables import DeltaTable

        target = DeltaTable.forName(spark, qualified(cfg, name))
    return int(target.detail().first()["numFiles"])


def version(spark: SparkSession, cfg: Config, name: str) -> int | None:
    """Current Delta version of a table, None when it does not exist."""
    if not spark.catalog.tableExists(qualified(cfg, name)):
        return None
    row = spark.sql(f"DESCRIBE HISTORY {qualified(cfg, name)} LIMIT 1").select("version").first()
    return None if row is None else int(row[0])
