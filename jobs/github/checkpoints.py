"""Per-repository crawl checkpoints in the ``crawl_checkpoints`` Delta table.

Checkpoints are MERGEd through delta-rs from the crawl's one coordinating
thread: a commit takes milliseconds, so the crawl can checkpoint every few
seconds without a Spark job, and ``crawl --no-ingest`` never starts Spark.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone

import pyarrow as pa

from schemas.crawl import CRAWL_CHECKPOINTS

IN_PROGRESS, FETCHED, DONE = "in_progress", "fetched", "done"
GONE_STATUSES = {404: "gone", 410: "issues_disabled", 451: "blocked"}


@dataclass(frozen=True)
class Checkpoint:
    """Where one repository's crawl stands (see the ``crawl_checkpoints`` columns)."""

    repository: str
    status: str = IN_PROGRESS
    next_url: str | None = None
    since: str | None = None
    pass_started: str | None = None
    etag: str | None = None
    issues_fetched: int = 0
    raw_file: str | None = None
    raw_offset: int = 0
    error: str | None = None

    def but(self, **changes: object) -> "Checkpoint":
        return replace(self, **changes)


class CheckpointStore:
    """Load and MERGE checkpoints of one table location."""

    def __init__(self, path: str) -> None:
        self.path = path

    def load(self) -> dict[str, Checkpoint]:
        """Every checkpoint by repository (empty when the table does not exist yet)."""
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError

        try:
            rows = DeltaTable(self.path).to_pyarrow_table().to_pylist()
        except TableNotFoundError:
            return {}
        fields = Checkpoint.__dataclass_fields__
        return {r["repository"]: Checkpoint(**{k: v for k, v in r.items() if k in fields}) for r in rows}

    def save(self, checkpoints: list[Checkpoint], run_id: str) -> None:
        """MERGE checkpoints on repository (one Delta commit)."""
        from deltalake import DeltaTable, write_deltalake
        from deltalake.exceptions import TableNotFoundError

        if not checkpoints:
            return
        now = datetime.now(timezone.utc)
        rows = [{**asdict(c), "run_id": run_id, "updated_at": now} for c in checkpoints]
        data = pa.Table.from_pylist(rows, schema=CRAWL_CHECKPOINTS.arrow)
        try:
            table = DeltaTable(self.path)
        except TableNotFoundError:
            write_deltalake(self.path, data, mode="append")
            return
        (
            table.merge(data, predicate="t.repository = s.repository", source_alias="s", target_alias="t")
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .execute()
        )
