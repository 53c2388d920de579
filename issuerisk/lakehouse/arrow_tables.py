"""The Arrow side of the lakehouse: the project's Delta tables through delta-rs, without Spark.

Ray stages, the run ledger, the crawler and the analysis stages read and write
here; commits take milliseconds and need no JVM. A table missing on first use
is created from its :class:`~issuerisk.schemas.TableSpec` (with the columns'
meanings as comments), so a later Spark process registers it in the catalog by
name (:meth:`issuerisk.lakehouse.spark_tables.SparkTables.create`), and a table
Spark created is read and merged here alike.
"""

from __future__ import annotations

import random
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import pyarrow as pa

from issuerisk.conf import Config
from issuerisk.schemas import TABLES, TableSpec
from issuerisk.schemas.ledger import RUNS

MergeHow = Literal["upsert", "insert", "replace_run"]
MERGE_MODES: tuple[str, ...] = ("upsert", "insert", "replace_run")


COMMIT_ATTEMPTS = 8
"""A MERGE that loses a commit race (two commands writing ``runs`` at once) is repeated, with jittered backoff, this
often."""


class TableVersionError(LookupError):
    """A table version that was asked for cannot be read (vacuumed, or never existed)."""


def spec_of(table: TableSpec | str) -> TableSpec:
    """The spec of a table given by spec or by name.

    Raises:
        KeyError: no table of that name is declared in ``schemas``.
    """
    if isinstance(table, TableSpec):
        return table
    if table not in TABLES:
        raise KeyError(f"no table {table!r} is declared; the project's tables are {sorted(TABLES)}")
    return TABLES[table]


def check_merge(spec: TableSpec, how: str, run_id: str | None) -> None:
    """Validate a MERGE request the same way for both sides.

    Raises:
        ValueError: an unknown mode, or ``replace_run`` without a run id or on a table without ``run_id`` in its key.
    """
    if how not in MERGE_MODES:
        raise ValueError(f"merge how={how!r} is unknown; use one of {MERGE_MODES}")
    if how == "replace_run":
        if not run_id:
            raise ValueError(f"replacing a run's rows of {spec.name} needs the run id")
        if "run_id" not in spec.key:
            raise ValueError(
                f"{spec.name} is not keyed by run_id, so a run's rows cannot be replaced; use how='upsert'"
            )


def key_predicate(spec: TableSpec) -> str:
    """``t.k = s.k AND ...`` over the spec's key (keys are never null)."""
    return " AND ".join(f"t.`{k}` = s.`{k}`" for k in spec.key)


def sql_text(value: str) -> str:
    """A SQL string literal (single quotes doubled)."""
    return "'" + value.replace("'", "''") + "'"


def _literal(value: Any) -> str:
    if isinstance(value, str):
        return sql_text(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"a where value must be a string or a number, got {type(value).__name__}")
    return repr(value)


def conform(rows: pa.Table, spec: TableSpec) -> pa.Table:
    """The spec's columns of ``rows`` in order with their declared types.

    Raises:
        ValueError: a column of the spec is missing from ``rows``.
    """
    missing = [n for n in spec.names if n not in rows.column_names]
    if missing:
        raise ValueError(f"cannot write {spec.name}: the rows lack columns {missing}")
    return pa.Table.from_arrays(
        [rows.column(n).cast(f.type) for n, f in zip(spec.names, spec.arrow)], schema=spec.arrow
    )


def new_columns(spec: TableSpec, existing: Sequence[str]) -> list:
    """The spec's columns a table written earlier lacks.

    Raises:
        ValueError: one of them is not nullable (old rows could not hold it).
    """
    missing = [c for c in spec.columns if c.name not in set(existing)]
    required = [c.name for c in missing if not c.nullable]
    if required:
        raise ValueError(
            f"{spec.name} lacks columns {required} that are declared NOT NULL; declare new columns nullable so "
            "existing rows stay valid"
        )
    return missing


def relaxed_columns(spec: TableSpec, nullable: dict[str, bool]) -> list[str]:
    """Columns the spec now allows to be null that a table written earlier declares NOT NULL."""
    return [c.name for c in spec.columns if c.nullable and nullable.get(c.name) is False]


def _commented(spec: TableSpec) -> pa.Schema:
    return pa.schema([f.with_metadata({"comment": c.doc}) for f, c in zip(spec.arrow, spec.columns)])


def plain_types(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Cast DataFusion's view types (``string_view``) to the plain ones the rest of pyarrow handles."""
    fields = [pa.field(f.name, pa.string() if f.type == pa.string_view() else f.type, f.nullable) for f in batch.schema]
    schema = pa.schema(fields)
    return batch if schema == batch.schema else batch.cast(schema)


class PinnedTableError(RuntimeError):
    """A write to a table pinned at a past version (a replay reads its inputs as they were and changes none)."""


class UndeclaredTableError(RuntimeError):
    """A stage read or wrote a table its :class:`~issuerisk.stage.Stage` does not declare."""


LEDGER = RUNS.name
"""The run ledger: every command reads and writes its own row, whatever its stage declares."""
STRICT_ENV = "ISSUERISK_STRICT_TABLES"
"""Set to 1 (the tests do), an undeclared read or write raises :class:`UndeclaredTableError`; else it warns."""


@dataclass(frozen=True)
class Contract:
    """What the running stage declares it reads and writes: the one list the ledger records and replay pins."""

    stage: str
    reads: frozenset[str]
    writes: frozenset[str]
    strict: bool = False


def with_commit_retries(
    attempt: Callable[[], None],
    conflicts: tuple[type[BaseException], ...],
    attempts: int = COMMIT_ATTEMPTS,
    cap_s: float = 2.0,
) -> None:
    """Run one keyed MERGE ``attempt``; when another writer committed first (``conflicts``), run it again on the new
    version (a keyed MERGE is safe to repeat), ``attempts`` times at most, after a jittered exponential backoff capped
    at ``cap_s`` (the jitter spreads writers that collided, so they stop colliding).

    Raises:
        the last conflict, when every attempt met one.
    """
    for tries in range(attempts):
        try:
            attempt()
            return
        except conflicts:
            if tries == attempts - 1:
                raise
            time.sleep(min(cap_s, 0.05 * 2**tries) * random.uniform(0.25, 1.0))


class ArrowTables:
    """Create, read, query, MERGE and version the project's Delta tables with delta-rs.

    Args:
        pins: table name -> Delta version: every read of the table (here and through the Spark side) sees
            that version, and writes to it are refused; a replay reads its inputs as a recorded run did.
    """

    def __init__(self, cfg: Config, pins: Mapping[str, int] | None = None) -> None:
        self.cfg = cfg
        self.pins = dict(pins or {})
        self.contract: Contract | None = None
        self.undeclared: set[tuple[str, str]] = set()

    @contextmanager
    def declared(self, contract: Contract | None) -> Iterator[None]:
        """While the body runs, every read and write here and through the Spark side is checked against ``contract``
        (None: not checked); accesses outside it are collected in :attr:`undeclared` as (``read``/``write``, table)."""
        previous, self.contract = self.contract, contract
        try:
            yield
        finally:
            self.contract = previous

    def check_declared(self, spec: TableSpec, access: str) -> None:
        """Refuse (strict) or note and warn about a ``read``/``write`` of a table the running stage does not declare.

        Raises:
            UndeclaredTableError: in strict mode (``ISSUERISK_STRICT_TABLES=1``).
        """
        contract = self.contract
        if contract is None or spec.name == LEDGER:
            return
        if spec.name in (contract.writes if access == "write" else contract.reads | contract.writes):
            return
        message = (
            f"stage {contract.stage!r} {access}s {spec.name}, which its Stage does not declare: add it to the Stage's "
            f"{access}s (the run ledger records, and replay pins, the declared tables)"
        )
        if contract.strict:
            raise UndeclaredTableError(message)
        if (access, spec.name) not in self.undeclared:
            warnings.warn(message, stacklevel=3)
        self.undeclared.add((access, spec.name))

    def pinned(self, table: TableSpec | str, version: int | None = None) -> int | None:
        """The version a read of ``table`` sees: ``version`` when given, else its pin, else None (the current one)."""
        return version if version is not None else self.pins.get(spec_of(table).name)

    def check_writable(self, spec: TableSpec) -> None:
        """Refuse a write to a pinned table or one the running stage does not declare."""
        self.check_declared(spec, "write")
        if spec.name in self.pins:
            raise PinnedTableError(
                f"{spec.name} is pinned at version {self.pins[spec.name]} (a replay reads it as it was); it is not "
                "written"
            )

    def path(self, table: TableSpec | str) -> str:
        """Storage location of a table."""
        return self.cfg.table_path(spec_of(table).name)

    def _open(self, table: TableSpec | str, version: int | None = None) -> Any:
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError

        spec = spec_of(table)
        try:
            return DeltaTable(self.path(spec), version=version)
        except TableNotFoundError:
            if version is not None:
                raise TableVersionError(f"{spec.name} has no version {version} (the table does not exist)") from None
            return None
        except Exception as exc:  # noqa: BLE001 (delta-rs names a missing version in several error types)
            if version is not None:
                raise TableVersionError(
                    f"{spec.name} version {version} cannot be read ({str(exc).splitlines()[0][:200]}); it was vacuumed "
                    "or never existed"
                ) from None
            raise

    def exists(self, table: TableSpec | str) -> bool:
        """Whether the table has a Delta log yet."""
        return self._open(table) is not None

    def create(self, table: TableSpec | str) -> Any:
        """The table, created empty from its spec when missing (columns carry their meanings as comments);
        a table written before its spec gained columns gets them added (nullable), and a column the spec
        now allows to be null loses its NOT NULL, so no migration step is needed."""
        from deltalake import DeltaTable, Schema

        spec = spec_of(table)
        existing = self._open(spec)
        if existing is None:
            return DeltaTable.create(
                self.path(spec),
                _commented(spec),
                mode="ignore",
                partition_by=list(spec.partition_by) or None,
                name=spec.name,
                description=spec.doc,
            )
        schema = existing.schema().to_arrow()
        missing = new_columns(spec, schema.names)
        relaxed = relaxed_columns(spec, {f.name: f.nullable for f in schema})
        if missing:
            existing.alter.add_columns(
                list(Schema.from_arrow(pa.schema([_commented(spec).field(c.name) for c in missing])).fields)
            )
        for name in relaxed:
            existing.alter.drop_column_not_null(name)
        return self._open(spec) if missing or relaxed else existing

    def version(self, table: TableSpec | str) -> int | None:
        """Current Delta version (the pinned one for a pinned table), None when the table does not exist."""
        if self.pinned(table) is not None:
            return self.pinned(table)
        opened = self._open(table)
        return None if opened is None else int(opened.version())

    def read(
        self,
        table: TableSpec | str,
        columns: Sequence[str] | None = None,
        where: Mapping[str, Any] | None = None,
        version: int | None = None,
    ) -> pa.Table:
        """The table's rows (an empty table of its schema when it does not exist), typed as the spec declares.

        Args:
            columns: columns to read (all by default, in the spec's order); columns the spec gained after the
                table was written read as null.
            where: column -> value; only rows equal on every one (pushed down to the files by DataFusion).
            version: a past Delta version (time travel).

        Raises:
            TableVersionError: ``version`` cannot be read.
        """
        spec = spec_of(table)
        self.check_declared(spec, "read")
        opened = self._open(spec, self.pinned(spec, version))
        wanted = list(columns) if columns is not None else spec.names
        schema = pa.schema([spec.arrow.field(c).with_nullable(True) for c in wanted])
        if opened is None:
            return schema.empty_table()
        present = set(opened.schema().to_arrow().names)
        read = [c for c in wanted if c in present]
        if where:
            from deltalake import QueryBuilder

            condition = " AND ".join(f'"{c}" = {_literal(v)}' for c, v in where.items())
            sql = f"SELECT {', '.join(f'{chr(34)}{c}{chr(34)}' for c in read)} FROM t WHERE {condition}"
            reader = pa.RecordBatchReader.from_stream(QueryBuilder().register("t", opened).execute(sql))
            rows = pa.Table.from_batches(list(reader), schema=reader.schema)
        else:
            rows = opened.to_pyarrow_table(columns=read)
        # Files written by delta-rs hold view types (string_view); the spec's plain types are what every caller expects.
        return pa.Table.from_arrays(
            [
                rows.column(c).cast(schema.field(c).type)
                if c in present
                else pa.nulls(rows.num_rows, schema.field(c).type)
                for c in wanted
            ],
            schema=schema,
        )

    def query(
        self, sql: str, tables: Iterable[TableSpec | str], versions: dict[str, int] | None = None
    ) -> Iterator[pa.RecordBatch]:
        """Stream DataFusion SQL over the named tables (each registered under its own name; missing ones created empty).

        Args:
            versions: table name -> Delta version to read instead of the current one.
        """
        from deltalake import QueryBuilder

        qb = QueryBuilder()
        for table in tables:
            spec = spec_of(table)
            self.check_declared(spec, "read")
            version = self.pinned(spec, (versions or {}).get(spec.name))
            qb.register(spec.name, self._open(spec, version) if version is not None else self.create(spec))
        for batch in pa.RecordBatchReader.from_stream(qb.execute(sql)):
            yield plain_types(batch)

    def merge(
        self,
        table: TableSpec | str,
        rows: pa.Table,
        how: MergeHow = "upsert",
        *,
        run_id: str | None = None,
        update_condition: str | None = None,
    ) -> None:
        """MERGE Arrow rows into a table on its spec's key, creating the table first when missing.

        Args:
            rows: rows with the spec's columns (extra columns are dropped, order follows the spec).
            how: ``upsert`` (update matches where ``update_condition`` holds, insert the rest), ``insert``
                (insert rows whose key is new, never touch existing ones) or ``replace_run`` (upsert, then
                delete this run's rows whose key is not in ``rows``: the run's rows become exactly ``rows``).
            run_id: the run whose rows ``replace_run`` replaces.
            update_condition: SQL on aliases ``t`` and ``s``; None updates every match.

        Raises:
            ValueError: an unknown mode, ``replace_run`` without a run id, or a column of the spec missing from
            ``rows``.
            deltalake.exceptions.CommitFailedError: other processes kept committing first, :data:`COMMIT_ATTEMPTS`
            times.
        """
        spec = spec_of(table)
        check_merge(spec, how, run_id)
        self.check_writable(spec)
        source = conform(rows, spec)
        if rows.num_rows == 0 and how != "replace_run":
            return
        from deltalake.exceptions import CommitFailedError

        def attempt() -> None:
            merger = self.create(spec).merge(source, predicate=key_predicate(spec), source_alias="s", target_alias="t")
            if how != "insert":
                merger = merger.when_matched_update_all(predicate=update_condition)
            merger = merger.when_not_matched_insert_all()
            if how == "replace_run":
                merger = merger.when_not_matched_by_source_delete(predicate=f"t.run_id = {sql_text(run_id)}")
            merger.execute()

        with_commit_retries(attempt, (CommitFailedError,))

    def overwrite(self, table: TableSpec | str, rows: pa.Table, note: dict[str, Any] | None = None) -> None:
        """Replace the table's content with ``rows`` (one commit noting ``note``, read back by
        :meth:`commit_metadata`)."""
        import json

        from deltalake import CommitProperties, write_deltalake

        spec = spec_of(table)
        self.check_writable(spec)
        source = conform(rows, spec)
        self.create(spec)
        metadata = {"userMetadata": json.dumps(note, sort_keys=True)} if note is not None else None
        write_deltalake(
            self.path(spec), source, mode="overwrite", commit_properties=CommitProperties(custom_metadata=metadata)
        )

    def commit_metadata(self, table: TableSpec | str) -> dict[str, Any] | None:
        """The JSON ``userMetadata`` of the table's latest commit (of its pinned version for a pinned table: a writer's
        note, e.g. which build it belongs to); None when the table does not exist or the commit carries none."""
        import json

        self.check_declared(spec_of(table), "read")
        opened = self._open(table, self.pinned(table))
        if opened is None:
            return None
        note = (opened.history(1) or [{}])[0].get("userMetadata")
        try:
            return json.loads(note) if note else None
        except ValueError:
            return None

    def missing_files(self, table: TableSpec | str, version: int) -> list[str]:
        """Data files of ``table`` at ``version`` that are gone from storage (removed by VACUUM); [] when all are there.

        Raises:
            TableVersionError: the version's log entry itself is gone (log retention) or never existed.
        """
        from pyarrow import fs

        opened = self._open(table, version)
        if opened is None:
            raise TableVersionError(f"{spec_of(table).name} does not exist")
        uris = opened.file_uris()
        if not uris:
            return []
        filesystem, _ = fs.FileSystem.from_uri(uris[0])
        paths = [fs.FileSystem.from_uri(u)[1] if "://" in u else u for u in uris]
        return [u for u, info in zip(uris, filesystem.get_file_info(paths)) if info.type == fs.FileType.NotFound]

    def file_records(self, table: TableSpec | str) -> tuple[list[int | None], bool] | None:
        """(records per data file from the Delta log's statistics, deletion vectors possible); [] for a table
        not created yet; None where delta-rs cannot read the log (e.g. a storage scheme it lacks)."""
        try:
            opened = self._open(table)
            if opened is None:
                return [], False
            records = pa.table(opened.get_add_actions(flatten=True)).column("num_records").to_pylist()
            return records, "deletionVectors" in set(opened.protocol().writer_features or [])
        except Exception:  # noqa: BLE001 (any failure of delta-rs leaves the answer to Spark)
            return None
