"""Whether the three silver tables come from one filter build, so no stage ever reads a mix.

The filter rewrites ``silver_issues``, ``silver_excluded`` and
``silver_repositories`` as three Delta commits, each noting the build (the
filter's run id and the bronze version it read). A process killed between them
leaves tables of different builds; :func:`silver_build` tells, and the runner
rebuilds silver before any stage that reads it (:func:`issuerisk.stage.execute`).
"""

from __future__ import annotations

from issuerisk.lakehouse import ArrowTables
from issuerisk.schemas.silver import SILVER_EXCLUDED, SILVER_ISSUES, SILVER_REPOSITORIES

SILVER_TABLES = (SILVER_ISSUES, SILVER_EXCLUDED, SILVER_REPOSITORIES)
SILVER_NAMES = frozenset(t.name for t in SILVER_TABLES)


class MixedSilverError(RuntimeError):
    """The silver tables come from different filter builds (a filter was killed between its commits)."""


def silver_build(tables: ArrowTables) -> str | None:
    """The filter run the three silver tables share (None for tables written before builds were noted, or not yet
    written).

    Raises:
        MixedSilverError: the tables carry different builds, or only some carry one.
    """
    notes = {t.name: (tables.commit_metadata(t) or {}).get("silver_build") for t in SILVER_TABLES if tables.exists(t)}
    # Delta commits nothing when an empty table is overwritten with nothing: such a table fits any build.
    notes = {name: note for name, note in notes.items() if note is not None or _rows(tables, name)}
    builds = set(notes.values())
    if len(builds) > 1:
        shown = ", ".join(f"{name}: {note or 'none'}" for name, note in sorted(notes.items()))
        raise MixedSilverError(
            f"the silver tables come from different filter builds ({shown}); rerun `issuerisk filter` to rebuild them"
        )
    return next(iter(builds), None)


def _rows(tables: ArrowTables, name: str) -> int:
    records = tables.file_records(name)
    return 1 if records is None else sum(n or 1 for n in records[0])
