"""Ingest GitHub issue objects into ``bronze_issues``; malformed records go to ``bronze_rejects``.

Files are parsed in Spark tasks (``mapInArrow`` over the file list, each task running
:func:`issuerisk.issue_files.iter_rows`), so the driver never holds the records;
each record becomes either a typed bronze row or a reject with file, line, reason and
detail. Bronze is MERGEd on (repository, number), keeping the newest ``updated_at``, so
rerunning the same files changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from issuerisk.constants import FRAMEWORKS
from issuerisk.context import Context
from issuerisk.display import table
from issuerisk.issue_files import (
    MAX_FILE_BYTES,
    MAX_RECORD_BYTES,
    PARSED,
    IngestError,
    find_files,
    iter_rows,
    to_batches,
)
from issuerisk.schemas.bronze import BRONZE_ISSUES, BRONZE_REJECTS
from issuerisk.stage import FRAMEWORK, PATHS, Stage

NEWER = (
    "s.updated_at > t.updated_at OR (t.updated_at IS NULL AND s.updated_at IS NOT NULL)"
    " OR (s.updated_at <=> t.updated_at AND s.framework IS NOT NULL AND NOT (s.framework <=> t.framework))"
)
FILE_FAULTS = ("file_too_large", "unreadable_file")
"""Reject reasons after which the rest of a file did not land (what follows the fault was never read)."""
# A reject is rewritten only when the record at its file and line is rejected differently now.
CHANGED_REJECT = (
    "NOT (" + " AND ".join(f"s.{c} <=> t.{c}" for c in ("reason", "detail", "raw", "repository", "number")) + ")"
)


def parse(
    spark: SparkSession,
    files: list[str],
    files_per_task: int,
    max_record_bytes: int = MAX_RECORD_BYTES,
    max_file_bytes: int = MAX_FILE_BYTES,
) -> DataFrame:
    """Parse files in Spark tasks into one DataFrame of :data:`PARSED` rows (see :func:`iter_rows`)."""
    from pyspark.sql.pandas.types import from_arrow_schema

    def parse_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            for path in batch.column("path").to_pylist():
                yield from to_batches(iter_rows(path, max_record_bytes, max_file_bytes))

    # At least 4 tasks per core, so uneven files still keep every core busy to the end.
    slices = max(1, min(len(files), max(-(-len(files) // files_per_task), spark.sparkContext.defaultParallelism * 4)))
    paths = spark.createDataFrame([(f,) for f in files], "path string").repartition(slices)
    return paths.mapInArrow(parse_batches, from_arrow_schema(PARSED))


def to_bronze(parsed: DataFrame, framework: str | None, run_id: str, repeated_keys: bool = True) -> DataFrame:
    """Accepted records as bronze rows, one per issue: the newest ``updated_at`` (then the latest file) wins.

    Args:
        repeated_keys: some issue appears more than once in ``parsed``; when False the
            ranking (a shuffle of every record) is skipped.
    """
    accepted = parsed.where(F.col("reason").isNull())
    if repeated_keys:
        newest = Window.partitionBy("repository", "number").orderBy(
            F.col("updated_at").desc_nulls_last(), F.col("source_file").desc(), F.col("source_line").desc()
        )
        accepted = accepted.withColumn("_rank", F.row_number().over(newest)).where("_rank = 1").drop("_rank")
    return (
        accepted.drop("reason", "detail", "raw")
        .withColumn("framework", F.lit(framework).cast("string"))
        .withColumn("run_id", F.lit(run_id))
        .withColumn("ingested_at", F.current_timestamp())
    )


def to_rejects(parsed: DataFrame, run_id: str) -> DataFrame:
    return (
        parsed.where(F.col("reason").isNotNull())
        .withColumn("run_id", F.lit(run_id))
        .withColumn("rejected_at", F.current_timestamp())
    )


def run(ctx: Context, paths: list[str], framework: str | None = None) -> dict[str, Any]:
    """MERGE the issue files under ``paths`` into bronze; record rejects. Returns counts, and in ``incomplete_files``
    each file whose rest did not land (cut at ``ingest.max_file_bytes``, or unreadable from some point) with why.

    Raises:
        IngestError: a path is missing, no issue file was found, or ``framework`` is unknown.
    """
    if framework is not None and framework not in FRAMEWORKS:
        raise IngestError(
            f"framework {framework!r} is not one of {FRAMEWORKS}; omit --framework to infer it per repository"
        )
    cfg = ctx.cfg
    files = find_files(paths)
    tables = ctx.lake.spark
    spark = tables.spark
    before = tables.row_count(BRONZE_ISSUES)
    parsed = parse(
        spark, files, cfg.ingest.batch_files, cfg.ingest.max_record_bytes, cfg.ingest.max_file_bytes
    ).persist()
    try:
        counts = parsed.select(
            F.count(F.lit(1)).alias("records"),
            F.count("reason").alias("rejected"),
            F.count_distinct(F.when(F.col("reason").isNull(), F.struct("repository", "number"))).alias("issues"),
        ).first()
        records, rejected = counts["records"], counts["rejected"]
        bronze = to_bronze(parsed, framework, ctx.run.run_id, repeated_keys=counts["issues"] < records - rejected)
        rejects = to_rejects(parsed, ctx.run.run_id)
        tables.merge(BRONZE_ISSUES, bronze, update_condition=NEWER)
        by_reason, incomplete = {}, {}
        if rejected:
            tables.merge(BRONZE_REJECTS, rejects, update_condition=CHANGED_REJECT)
            by_reason = {r["reason"]: r["count"] for r in rejects.groupBy("reason").count().collect()}
            incomplete = {
                r["source_file"]: r["reason"]
                for r in rejects.where(F.col("reason").isin(*FILE_FAULTS))
                .select("source_file", "reason")
                .distinct()
                .collect()
            }
    finally:
        parsed.unpersist()
    after = tables.row_count(BRONZE_ISSUES)
    result = {
        "files": len(files),
        "records": records,
        "accepted": records - rejected,
        "rejected": rejected,
        "new_issues": after - before,
        BRONZE_ISSUES.name: after,
        "rejects_by_reason": by_reason,
        "incomplete_files": incomplete,
    }
    table(
        "ingest",
        ["files", "records", "accepted", "rejected", "new issues", "bronze total"],
        [[len(files), records, records - rejected, rejected, after - before, after]],
    )
    if by_reason:
        table("rejected records", ["reason", "records"], sorted(by_reason.items()))
        print(f"  see: SELECT source_file, source_line, reason, detail FROM {cfg.project.database}.bronze_rejects")
    return result


STAGE = Stage(
    "ingest",
    "MERGE GitHub issue objects (JSON Lines / JSON arrays, gzip too) into bronze_issues",
    run,
    reads=(BRONZE_ISSUES.name,),
    writes=(BRONZE_ISSUES.name, BRONZE_REJECTS.name),
    options=(PATHS, FRAMEWORK),
    sections=("ingest",),
)
