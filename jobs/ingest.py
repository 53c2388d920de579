"""Ingest GitHub issue objects into ``bronze_issues``; malformed records go to ``bronze_rejects``.

Input is what ``GET /repos/{owner}/{repo}/issues`` (or ``/issues/{number}``)
returns: JSON Lines or JSON array files, optionally gzip-compressed. Files are
parsed in Spark tasks (``mapInArrow`` over the file list), so the driver never
holds the records; each record becomes either a typed bronze row or a reject
with file, line and reason. Bronze is MERGEd on (repository, number), keeping
the newest ``updated_at``, so rerunning the same files changes nothing.
"""

from __future__ import annotations

import io
import json
import os
import zlib
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from issuerisk.constants import FRAMEWORKS
from issuerisk.context import Context
from issuerisk.display import table
from issuerisk.schemas.lakehouse import BRONZE_ISSUES, BRONZE_REJECTS
from issuerisk.stage import FRAMEWORK, PATHS, Stage

SUFFIXES = (".json", ".jsonl", ".ndjson", ".json.gz", ".jsonl.gz", ".ndjson.gz")
RAW_LIMIT = 65536
GZIP_CHUNK = 1 << 18
GZIP_MAGIC = b"\x1f\x8b"


class IngestError(ValueError):
    """The ingest job was given nothing it can read."""


class RecordError(ValueError):
    """One record cannot be accepted; ``reason`` is the reject category."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


# What a parse task emits: bronze columns (all nullable), plus reject columns when rejected.
PARSED = pa.schema(
    [pa.field(f.name, f.type, True) for f in BRONZE_ISSUES.arrow if f.name not in ("run_id", "ingested_at", "framework")]
    + [pa.field("reason", pa.string()), pa.field("detail", pa.string()), pa.field("raw", pa.string())]
)
NEWER = (
    "s.updated_at > t.updated_at OR (t.updated_at IS NULL AND s.updated_at IS NOT NULL)"
    " OR (s.updated_at <=> t.updated_at AND s.framework IS NOT NULL AND NOT (s.framework <=> t.framework))"
)
# A reject is rewritten only when the record at its file and line is rejected differently now.
CHANGED_REJECT = "NOT (" + " AND ".join(f"s.{c} <=> t.{c}" for c in ("reason", "detail", "raw", "repository", "number")) + ")"


def find_files(paths: list[str]) -> list[str]:
    """Expand files and folders into the sorted list of issue files.

    Raises:
        IngestError: a path does not exist, or nothing readable was found.
    """
    files: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(str(p) for p in sorted(path.rglob("*")) if p.is_file() and p.name.endswith(SUFFIXES))
        elif path.is_file():
            files.append(str(path))
        else:
            raise IngestError(f"input path {raw!r} does not exist; pass files or folders of GitHub issue JSON (.json, .jsonl, .gz)")
    if not files:
        raise IngestError(f"no issue files (*{', *'.join(SUFFIXES)}) under {paths}")
    return sorted(set(os.path.abspath(f) for f in files))


def _timestamp(obj: dict[str, Any], field: str, required: bool) -> datetime | None:
    value = obj.get(field)
    if value is None:
        if required:
            raise RecordError("missing_field", f"{field} is missing")
        return None
    if not isinstance(value, str):
        raise RecordError("wrong_type", f"{field} must be an ISO-8601 string, got {type(value).__name__} {value!r}")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise RecordError("bad_date", f"{field}={value!r} is not an ISO-8601 date") from None
    return parsed.astimezone(timezone.utc) if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _typed(obj: dict[str, Any], field: str, kind: type | tuple[type, ...], required: bool) -> Any:
    value = obj.get(field)
    if value is None:
        if required:
            raise RecordError("missing_field", f"{field} is missing")
        return None
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        name = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise RecordError("wrong_type", f"{field} must be {name}, got {type(value).__name__} {str(value)[:80]!r}")
    return value


def repository_of(obj: dict[str, Any]) -> str:
    """owner/name from ``repository_url`` (api.github.com or GitHub Enterprise) or ``html_url``."""
    for field, marker in (("repository_url", "/repos/"), ("html_url", "://")):
        url = obj.get(field)
        if isinstance(url, str) and marker in url:
            tail = url.split(marker, 1)[1]
            parts = tail.split("/")
            if field == "html_url":
                parts = parts[1:]
            if len(parts) >= 2 and parts[0] and parts[1]:
                return f"{parts[0]}/{parts[1]}"
    raise RecordError("missing_field", "repository_url (or html_url) naming owner/name is missing")


def parse_record(obj: Any) -> dict[str, Any]:
    """Typed bronze fields of one GitHub issue object.

    Raises:
        RecordError: the object lacks id/number/title/created_at, has a wrong type or an unparseable date.
    """
    if not isinstance(obj, dict):
        raise RecordError("not_an_object", f"expected a JSON object, got {type(obj).__name__}")
    user = obj.get("user") if isinstance(obj.get("user"), dict) else {}
    labels = _typed(obj, "labels", list, False) or []
    return {
        "repository": repository_of(obj),
        "number": _typed(obj, "number", int, True),
        "id": _typed(obj, "id", int, True),
        "title": _typed(obj, "title", str, True),
        "body": _typed(obj, "body", str, False),
        "state": _typed(obj, "state", str, False),
        "state_reason": _typed(obj, "state_reason", str, False),
        "labels": [lab.get("name") if isinstance(lab, dict) else str(lab) for lab in labels],
        "user_login": user.get("login"),
        "user_type": user.get("type"),
        "author_association": _typed(obj, "author_association", str, False),
        "comments": _typed(obj, "comments", int, False),
        "is_pull_request": obj.get("pull_request") is not None,
        "html_url": _typed(obj, "html_url", str, False),
        "created_at": _timestamp(obj, "created_at", True),
        "updated_at": _timestamp(obj, "updated_at", False),
        "closed_at": _timestamp(obj, "closed_at", False),
    }


def _loads(text: str) -> Any:
    """orjson's parse; the standard library's for what orjson refuses but JSON allows (lone surrogate escapes)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _read(path: str) -> tuple[bytes | bytearray, str | None]:
    """The file's bytes, gunzipped for ``.gz`` (every member), and why it could not be read to its end
    (None when it could). A gzip file cut short or corrupt keeps what came before the fault."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        return b"", f"{type(exc).__name__}: {exc}"
    if not path.endswith(".gz"):
        return raw, None
    out = bytearray()  # grown in place: no list of chunks beside a joined copy
    at = members = 0
    while at < len(raw):
        member, start = zlib.decompressobj(wbits=31), at
        try:
            while not member.eof and at < len(raw):  # in chunks: a corrupt block loses one chunk's output at most
                chunk = raw[at:at + GZIP_CHUNK]
                out += member.decompress(chunk)
                at += len(chunk) - len(member.unused_data)
        except zlib.error as exc:
            if members and raw[start:start + 2] != GZIP_MAGIC:  # what GNU gzip calls trailing garbage
                return out, f"{len(raw) - at} bytes after gzip member {members} are not gzip data ({exc}); the members before them were read whole"
            return out, f"corrupt gzip data: {exc}"
        if not member.eof:
            return out, "the gzip data ends before its end marker (file cut short)"
        members += 1
        while at < len(raw) and raw[at] == 0:  # gzip allows zero padding between members
            at += 1
    return out, None


def _records(path: str) -> Iterator[tuple[int, str | None, Any, str | None, str | None]]:
    """(line, text, parsed object, reject reason, detail) for each record of a JSON Lines or JSON array file.

    A file that cannot be read to its end yields its whole lines before the fault, then an
    ``unreadable_file`` reject on the next line, with the text of the line the fault cut
    as its raw (a JSON array: one reject, on line 1).
    """
    data, fault = _read(path)
    text = data.decode("utf-8", errors="replace")
    if text.lstrip().startswith("["):
        if fault is not None:
            yield 1, text[:RAW_LIMIT], None, "unreadable_file", fault
            return
        try:
            items = _loads(text)
        except json.JSONDecodeError as exc:
            yield 1, text[:RAW_LIMIT], None, "broken_json", f"file is not a valid JSON array: {exc}"
            return
        for index, item in enumerate(items, start=1):
            yield index, None, item, None, None
        return
    partial = None
    if fault is not None:  # the line the fault cut is part of the reject, not a broken_json of its own
        whole = text.rfind("\n") + 1
        text, partial = text[:whole], text[whole:] or None
    number = 0
    for number, line in enumerate(io.StringIO(text), start=1):
        if not line.strip():
            continue
        try:
            yield number, line, _loads(line), None, None
        except json.JSONDecodeError as exc:
            yield number, line, None, "broken_json", str(exc)
    if fault is not None:
        yield number + 1, partial, None, "unreadable_file", f"{fault} (after {number} whole lines)"


def parse_file(path: str) -> list[dict[str, Any]]:
    """Parse one file into rows of :data:`PARSED`: a bronze row, or a reject with reason and raw text."""
    rows = []
    for line, text, obj, reason, detail in _records(path):
        base = {"source_file": path, "source_line": line}
        if reason is not None:
            rows.append({**base, "reason": reason, "detail": detail, "raw": (text or "")[:RAW_LIMIT]})
            continue
        raw = text.rstrip("\n") if text is not None else orjson.dumps(obj).decode()
        try:
            rows.append({**base, **parse_record(obj), "raw_json": raw})
        except RecordError as err:
            partial = {}
            if isinstance(obj, dict):
                partial["number"] = obj.get("number") if isinstance(obj.get("number"), int) else None
                try:
                    partial["repository"] = repository_of(obj)
                except RecordError:
                    pass
            rows.append({**base, **partial, "reason": err.reason, "detail": err.detail, "raw": raw[:RAW_LIMIT]})
    return rows


def to_batch(rows: list[dict[str, Any]]) -> pa.RecordBatch:
    """Rows of :func:`parse_file` as one Arrow batch of :data:`PARSED`, built column by column
    (several times faster than ``RecordBatch.from_pylist`` on these rows)."""
    return pa.RecordBatch.from_arrays([pa.array([r.get(f.name) for r in rows], type=f.type) for f in PARSED], schema=PARSED)


def _parse_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        for path in batch.column("path").to_pylist():
            rows = parse_file(path)
            for start in range(0, len(rows), 2000):
                yield to_batch(rows[start:start + 2000])


def parse(spark: SparkSession, files: list[str], files_per_task: int) -> DataFrame:
    """Parse files in Spark tasks into one DataFrame of :data:`PARSED` rows."""
    from pyspark.sql.pandas.types import from_arrow_schema

    # At least 4 tasks per core, so uneven files still keep every core busy to the end.
    slices = max(1, min(len(files), max(-(-len(files) // files_per_task), spark.sparkContext.defaultParallelism * 4)))
    paths = spark.createDataFrame([(f,) for f in files], "path string").repartition(slices)
    return paths.mapInArrow(_parse_batches, from_arrow_schema(PARSED))


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
        accepted
        .drop("reason", "detail", "raw")
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
    """MERGE the issue files under ``paths`` into bronze; record rejects. Returns counts.

    Raises:
        IngestError: a path is missing, no issue file was found, or ``framework`` is unknown.
    """
    if framework is not None and framework not in FRAMEWORKS:
        raise IngestError(f"framework {framework!r} is not one of {FRAMEWORKS}; omit --framework to infer it per repository")
    cfg = ctx.cfg
    files = find_files(paths)
    tables = ctx.lake.spark
    spark = tables.spark
    ctx.run.read(BRONZE_ISSUES.name)
    before = tables.row_count(BRONZE_ISSUES)
    parsed = parse(spark, files, cfg.ingest.batch_files).persist()
    try:
        counts = parsed.select(F.count(F.lit(1)).alias("records"), F.count("reason").alias("rejected"),
                               F.count_distinct(F.when(F.col("reason").isNull(), F.struct("repository", "number"))).alias("issues")).first()
        records, rejected = counts["records"], counts["rejected"]
        bronze = to_bronze(parsed, framework, ctx.run.run_id, repeated_keys=counts["issues"] < records - rejected)
        rejects = to_rejects(parsed, ctx.run.run_id)
        tables.merge(BRONZE_ISSUES, bronze, update_condition=NEWER)
        by_reason = {}
        if rejected:
            tables.merge(BRONZE_REJECTS, rejects, update_condition=CHANGED_REJECT)
            by_reason = {r["reason"]: r["count"] for r in rejects.groupBy("reason").count().collect()}
    finally:
        parsed.unpersist()
    after = tables.row_count(BRONZE_ISSUES)
    ctx.run.wrote(BRONZE_ISSUES.name, BRONZE_REJECTS.name)
    result = {"files": len(files), "records": records, "accepted": records - rejected, "rejected": rejected,
              "new_issues": after - before, "bronze_issues": after, "rejects_by_reason": by_reason}
    table("ingest", ["files", "records", "accepted", "rejected", "new issues", "bronze total"],
          [[len(files), records, records - rejected, rejected, after - before, after]])
    if by_reason:
        table("rejected records", ["reason", "records"], sorted(by_reason.items()))
        print(f"  see: SELECT source_file, source_line, reason, detail FROM {cfg.project.database}.bronze_rejects")
    return result


STAGE = Stage(
    "ingest", "MERGE GitHub issue objects (JSON Lines / JSON arrays, gzip too) into bronze_issues", run,
    writes=(BRONZE_ISSUES.name, BRONZE_REJECTS.name), options=(PATHS, FRAMEWORK),
)
