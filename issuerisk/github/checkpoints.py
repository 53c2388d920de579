"""Per-repository crawl checkpoints in the ``crawl_checkpoints`` Delta table.

Checkpoints are MERGEd through the lakehouse's Arrow side (delta-rs) from the
crawl's one coordinating thread: a commit takes milliseconds, so the crawl can
checkpoint every few seconds without a Spark job, and ``crawl --no-ingest``
never starts Spark.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone

import pyarrow as pa

from issuerisk.lakehouse import ArrowTables
from issuerisk.schemas.bronze import CRAWL_CHECKPOINTS

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
    """Load and MERGE the checkpoints of ``crawl_checkpoints``."""

    def __init__(self, tables: ArrowTables) -> None:
        self.tables = tables

    def load(self) -> dict[str, Checkpoint]:
        """Every checkpoint by repository (empty when the table does not exist yet)."""
        fields = Checkpoint.__dataclass_fields__
        return {
            r["repository"]: Checkpoint(**{k: v for k, v in r.items() if k in fields})
            for r in self.tables.read(CRAWL_CHECKPOINTS).to_pylist()
        }

    def save(self, checkpoints: list[Checkpoint], run_id: str) -> None:
        """MERGE checkpoints on repository (one Delta commit)."""
        if not checkpoints:
            return
        now = datetime.now(timezone.utc)
        rows = [{**asdict(c), "run_id": run_id, "updated_at": now} for c in checkpoints]
        self.tables.merge(CRAWL_CHECKPOINTS, pa.Table.from_pylist(rows, schema=CRAWL_CHECKPOINTS.arrow))
