"""The Spark side of the lakehouse: the project's Delta tables as DataFrames, for the Spark jobs.

Tables are created from their :mod:`issuerisk.schemas` spec and registered in
the project's database, so Spark SQL finds them by name in any later process; a
Delta folder that delta-rs created first is registered as it is. Writes are
MERGEs on the spec's key (insert-only, upsert, or replace a run's rows), so a
rerun is idempotent, or whole-table overwrites for tables rebuilt from their inputs.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from issuerisk.conf import Config
from issuerisk.lakehouse.arrow_tables import (
    ArrowTables,
    MergeHow,
    TableVersionError,
    check_merge,
    new_columns,
    relaxed_columns,
    spec_of,
    sql_text,
    with_commit_retries,
)
from issuerisk.schemas import TABLES, TableSpec


def conform(df: DataFrame, spec: TableSpec) -> DataFrame:
    """Select the spec's columns in order with their declared types.

    Raises:
        ValueError: a column of the spec is missing from ``df``.
    """
    missing = [c for c in spec.names if c not in df.columns]
    if missing:
        raise ValueError(f"cannot write {spec.name}: the frame lacks columns {missing}")
    return df.select([df[f.name].cast(f.dataType).alias(f.name) for f in spec.spark.fields])


def _quoted(text: str) -> str:
    return text.replace("'", "\\'")


SPARK_COMMIT_ATTEMPTS = 16
"""Attempts of one Spark-side MERGE that meets commit conflicts (see :func:`with_commit_retries`)."""


class SparkTables:
    """Create, read, MERGE, overwrite and version the project's Delta tables through one SparkSession."""

    def __init__(self, spark: SparkSession, cfg: Config, arrow: ArrowTables | None = None) -> None:
        self.spark = spark
        self.cfg = cfg
        self.arrow = arrow or ArrowTables(cfg)
        self._checked: set[str] = set()
        self._lock = (
            threading.RLock()
        )  # a background registration (Lakehouse.start_spark) and the stages create tables at once

    def name(self, table: TableSpec | str) -> str:
        """``database.table`` for SQL."""
        return f"{self.cfg.project.database}.{spec_of(table).name}"

    def _has_delta_log(self, path: str) -> bool:
        jvm = self.spark.sparkContext._jvm
        hpath = jvm.org.apache.hadoop.fs.Path(f"{path}/_delta_log")
        fs = hpath.getFileSystem(self.spark.sparkContext._jsc.hadoopConfiguration())
        return bool(fs.exists(hpath))

    def create(self, table: TableSpec | str) -> str:
        """Create the table (or register an existing Delta folder) in the catalog; return its SQL name.

        A table written before its spec gained columns gets them added (nullable), and a column the spec
        now allows to be null loses its NOT NULL, once per session.
        """
        spec = spec_of(table)
        name = self.name(spec)
        if name in self._checked:
            return name
        with self._lock:
            return self._create(spec, name)

    def _create(self, spec: TableSpec, name: str) -> str:
        if name in self._checked:
            return name
        if not self.spark.catalog.tableExists(name):
            path = self.cfg.table_path(spec.name)
            if self._has_delta_log(path):
                self.spark.sql(f"CREATE TABLE IF NOT EXISTS {name} USING delta LOCATION '{path}'")
            else:
                partition = f"PARTITIONED BY ({', '.join(spec.partition_by)})" if spec.partition_by else ""
                self.spark.sql(
                    f"CREATE TABLE IF NOT EXISTS {name} (\n  {spec.ddl()}\n) USING delta {partition} "
                    f"LOCATION '{path}' COMMENT '{_quoted(spec.doc)}'"
                )
        schema = self.spark.table(name).schema
        missing = new_columns(spec, schema.names)
        if missing:
            columns = ", ".join(
                f"`{c.name}` {spec.spark[c.name].dataType.simpleString()} COMMENT '{_quoted(c.doc)}'" for c in missing
            )
            self.spark.sql(f"ALTER TABLE {name} ADD COLUMNS ({columns})")
        for column in relaxed_columns(spec, {f.name: f.nullable for f in schema.fields}):
            self.spark.sql(f"ALTER TABLE {name} ALTER COLUMN `{column}` DROP NOT NULL")
        self._checked.add(name)
        return name

    def create_all(self, names: list[str] | None = None) -> None:
        """Create (or register) every declared table, or the named ones."""
        for name in names or sorted(TABLES):
            self.create(TABLES[name])

    def read(self, table: TableSpec | str, version: int | None = None) -> DataFrame:
        """A table as a DataFrame in the spec's column order (created empty when missing); ``version`` reads a past
        Delta version.

        Raises:
            TableVersionError: ``version`` cannot be read (vacuumed or never existed).
        """
        spec = spec_of(table)
        self.arrow.check_declared(spec, "read")
        name = self.create(spec)
        version = self.arrow.pinned(spec, version)
        if version is None:
            return self.spark.table(name).select(*spec.names)
        try:
            df = self.spark.read.format("delta").option("versionAsOf", version).load(self.cfg.table_path(spec.name))
            df.schema  # noqa: B018 (resolves the snapshot now, so a missing version fails here)
            return df
        except Exception as exc:  # noqa: BLE001 (py4j wraps Delta's VersionNotFoundException)
            raise TableVersionError(
                f"{spec.name} version {version} cannot be read: {str(exc).splitlines()[0][:300]}"
            ) from None

    def merge(
        self,
        table: TableSpec | str,
        df: DataFrame,
        how: MergeHow = "upsert",
        *,
        run_id: str | None = None,
        update_condition: str | None = None,
    ) -> None:
        """MERGE ``df`` into the table on the spec's key.

        ``upsert`` updates matches (where ``update_condition`` holds) and inserts the rest;
        ``insert`` inserts only new keys; ``replace_run`` upserts and deletes the run's rows
        whose key is not in ``df``. With an ``update_condition``, source rows whose match it
        rejects are dropped first (an anti-join on the key and the condition): Delta rewrites
        every target file with a key match even where the condition is false
        (delta-io/delta#1812), so a rerun of unchanged input then rewrites no file and commits
        no version. This takes the key to be unique in the target, as every write to these
        tables is this MERGE of a source with one row per key.

        Into a table without data files the MERGE has inserts only and says so: Delta then
        runs it in one pass without first copying the source to local disk. It still joins the
        source to the target's snapshot, so rows a writer added meanwhile are not inserted
        twice, and a concurrent commit fails it with a conflict, as for any MERGE. The file
        count comes from the Delta log (delta-rs), so no data is read.

        Args:
            update_condition: SQL on aliases ``t`` (target) and ``s`` (source), e.g.
                ``"s.updated_at > t.updated_at"``; None updates every match.

        A commit conflict with another writer (Delta's ``ConcurrentAppendException`` and kin) is retried on
        the new version, as the Arrow side does, up to :data:`SPARK_COMMIT_ATTEMPTS` times (a Spark MERGE takes seconds,
        so
        its writers collide longer than delta-rs ones).

        Raises:
            ValueError: an unknown mode, ``replace_run`` without a run id, or a missing column.
            delta.exceptions.ConcurrentAppendException: (and kin) other writers kept committing first.
        """
        import delta.exceptions as delta_errors
        from delta.tables import DeltaTable

        conflicts = (
            delta_errors.ConcurrentAppendException,
            delta_errors.ConcurrentDeleteDeleteException,
            delta_errors.ConcurrentDeleteReadException,
            delta_errors.ConcurrentTransactionException,
            delta_errors.ConcurrentWriteException,
            delta_errors.DeltaConcurrentModificationException,
            delta_errors.MetadataChangedException,
        )
        spec = spec_of(table)
        check_merge(spec, how, run_id)
        self.arrow.check_writable(spec)
        on = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in spec.key)

        def attempt() -> None:  # each attempt on the table's newest version
            target = DeltaTable.forName(self.spark, self.create(spec))
            source = conform(df, spec)
            existing = self.data_files(spec, target)
            if existing and how == "upsert" and update_condition is not None:
                source = source.alias("s").join(
                    target.toDF().alias("t"), F.expr(f"{on} AND NOT coalesce({update_condition}, false)"), "left_anti"
                )
            builder = target.alias("t").merge(source.alias("s"), on)
            if existing and how != "insert":
                builder = builder.whenMatchedUpdateAll(condition=update_condition)
            builder = builder.whenNotMatchedInsertAll()
            if how == "replace_run":
                builder = builder.whenNotMatchedBySourceDelete(condition=f"t.run_id = {sql_text(run_id)}")
            builder.execute()

        with_commit_retries(attempt, conflicts, attempts=SPARK_COMMIT_ATTEMPTS, cap_s=4.0)

    def overwrite(self, table: TableSpec | str, df: DataFrame, note: dict[str, Any] | None = None) -> None:
        """Replace the table's content (for tables rebuilt whole from their inputs, e.g. silver).

        Args:
            note: JSON-able facts stored as the commit's ``userMetadata`` (read back by
                :meth:`ArrowTables.commit_metadata`), e.g. which build the table belongs to.
        """
        spec = spec_of(table)
        self.arrow.check_writable(spec)
        self.create(spec)
        writer = conform(df, spec).write.format("delta").mode("overwrite")
        if note is not None:
            writer = writer.option("userMetadata", json.dumps(note, sort_keys=True))
        writer.save(self.cfg.table_path(spec.name))

    def overwrite_all(self, frames: list[tuple[TableSpec, DataFrame]], note: dict[str, Any] | None = None) -> None:
        """:meth:`overwrite` several tables at once, one thread each, each commit carrying ``note``.

        Each write's driver-side work (planning, Delta's log replay and commit) is serial,
        so the writes overlap it with each other's tasks. Every table is its own Delta
        transaction: when one write fails (or the process dies) the others may still land,
        so readers compare the notes (see :mod:`issuerisk.silver`), and the first error is raised.
        """
        with ThreadPoolExecutor(max_workers=len(frames), thread_name_prefix="overwrite") as pool:
            for future in [pool.submit(self.overwrite, spec, df, note) for spec, df in frames]:
                future.result()

    def row_count(self, table: TableSpec | str) -> int:
        """Rows of a table from the Delta log's per-file statistics, without a Spark job.

        Falls back to a Spark count when the log cannot say: files without statistics,
        deletion vectors (rows deleted in place still count in a file's statistics) or a
        location delta-rs cannot open.
        """
        self.arrow.check_declared(spec_of(table), "read")
        log = self.arrow.file_records(table)
        if log is not None and None not in log[0] and not log[1]:
            return int(sum(log[0]))
        return self.read(table).count()

    def data_files(self, table: TableSpec | str, target: object = None) -> int:
        """Data files in a table's current version: from the Delta log through delta-rs, without Spark;
        else from Spark's ``DESCRIBE DETAIL`` (of ``target``, a loaded ``DeltaTable``, when given)."""
        log = self.arrow.file_records(table)
        if log is not None:
            return len(log[0])
        if target is None:
            from delta.tables import DeltaTable

            target = DeltaTable.forName(self.spark, self.create(table))
        return int(target.detail().first()["numFiles"])

    def version(self, table: TableSpec | str) -> int | None:
        """Current Delta version of a table, None when it does not exist."""
        if not self.spark.catalog.tableExists(self.name(table)):
            return None
        row = self.spark.sql(f"DESCRIBE HISTORY {self.name(table)} LIMIT 1").select("version").first()
        return None if row is None else int(row[0])
