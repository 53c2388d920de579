"""One clustering run's gold rows for the analysis stages: its issues and topic labels read, its rows built.

Shared by the topics, risk, compare and report stages (none of which imports
another); every read goes through the lakehouse's Arrow side.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from issuerisk.lakehouse import ArrowTables
from issuerisk.schemas import TableSpec
from issuerisk.schemas.gold import (
    GOLD_CLUSTERS,
    GOLD_PROFILE,
    GOLD_QUALITY,
    GOLD_TOPICS,
    GOLD_TRENDS,
    GOLD_VERSION_RISK,
)
from issuerisk.schemas.ledger import RUNS
from issuerisk.schemas.silver import SILVER_ISSUES

RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9_.\-]+")
ISSUE_COLUMNS = (
    "repository",
    "number",
    "framework",
    "is_closed",
    "resolution_hours",
    "created_at",
    "html_url",
    "title",
    "labels",
)


class NoClusteringError(RuntimeError):
    """There is no clustering run to analyse."""


def resolve_run_id(tables: ArrowTables, run_id: str | None) -> str:
    """The run to analyse: the one given, else the newest whose command succeeded among the clustering runs
    (``gold_clusters``) and the later gradings of them (``gold_risk``, see :func:`clustering_run`).

    A failed, abandoned or still running command may have left clusters behind; they are used only when
    named (a report of a half-written run would read as a finished answer).

    Raises:
        NoClusteringError: ``gold_clusters`` holds no run, or none of a command that succeeded.
        ValueError: ``run_id`` is not shaped like a run id (letters, digits, '-', '_', '.').
    """
    if run_id is not None:
        if not RUN_ID_PATTERN.fullmatch(run_id):
            raise ValueError(f"run id {run_id!r} is not valid; run ids look like 20260101T120000Z-1a2b3c4d")
        return run_id
    ids = pc.unique(tables.read(GOLD_CLUSTERS, columns=["run_id"]).column("run_id")).to_pylist()
    if ids:
        ids += list(derivations(tables))
    if not ids:
        raise NoClusteringError("gold_clusters holds no run; run `issuerisk cluster` (or `issuerisk run`) first")
    ledger = {r["run_id"]: r["status"] for r in tables.read(RUNS, columns=["run_id", "status"]).to_pylist()}
    succeeded = [i for i in ids if ledger.get(i) == "succeeded"]
    if not succeeded:
        newest = max(ids)
        raise NoClusteringError(
            f"no clustering run in gold_clusters succeeded; the newest, {newest}, is "
            f"{ledger.get(newest, 'not in the runs ledger')}: "
            f"pass its id to use it anyway, or run `issuerisk run` again"
        )
    return max(succeeded)


def derivations(tables: ArrowTables) -> dict[str, str]:
    """Grading run -> the clustering run it graded again, from the ledger (the risk stage's ``derived_from``, also
    on its ``gold_risk`` rows): every command may read the ledger, whatever tables its stage declares."""
    out = {}
    for row in tables.read(RUNS, columns=["run_id", "metrics_json"]).to_pylist():
        if row["metrics_json"] and '"derived_from"' in row["metrics_json"]:
            base = (json.loads(row["metrics_json"]).get("risk") or {}).get("derived_from")
            if base:
                out[row["run_id"]] = base
    return out


def clustering_run(tables: ArrowTables, run_id: str) -> str:
    """The clustering run behind ``run_id``: itself, or the run a later ``issuerisk risk`` graded again under
    ``run_id``. Its clusters, topics, quality and trends stay under the clustering run's id; the grades and what
    follows from them (comparisons, explanations) are under the grading run's."""
    return derivations(tables).get(run_id, run_id)


CLUSTERING_TABLES = frozenset(
    {GOLD_CLUSTERS.name, GOLD_TOPICS.name, GOLD_QUALITY.name, GOLD_TRENDS.name, GOLD_VERSION_RISK.name}
)
"""Gold tables keyed by the clustering run: a grading run's reads of them go to the run it graded."""


def _keyed(tables: ArrowTables, table, run_id: str) -> str:
    name = table if isinstance(table, str) else table.name
    return clustering_run(tables, run_id) if name in CLUSTERING_TABLES else run_id


def run_rows(tables: ArrowTables, table, run_id: str, columns: list[str] | None = None) -> pd.DataFrame:
    """One run's rows of a gold table as pandas (a grading run's clustering-side rows: see :func:`clustering_run`)."""
    return tables.read(table, columns=columns, where={"run_id": _keyed(tables, table, run_id)}).to_pandas()


def run_records(tables: ArrowTables, table, run_id: str, columns: list[str] | None = None) -> list[dict[str, Any]]:
    """One run's rows of a gold table as plain dicts (nulls as None, maps as dicts; see :func:`run_rows`)."""
    rows = tables.read(table, columns=columns, where={"run_id": _keyed(tables, table, run_id)})
    maps = [f.name for f in rows.schema if pa.types.is_map(f.type)]
    records = rows.to_pylist()
    for record in records:
        for name in maps:
            if record[name] is not None:
                record[name] = dict(record[name])
    return records


def run_issues(tables: ArrowTables, run_id: str) -> tuple[pd.DataFrame, int]:
    """One clustering run's issues with their silver facts.

    Returns:
        The frame (``gold_clusters`` columns plus :data:`ISSUE_COLUMNS`) and the
        number of clustered issues missing from ``silver_issues``, which are left out.

    Raises:
        NoClusteringError: the run has no rows in ``gold_clusters``.
    """
    clusters = run_rows(tables, GOLD_CLUSTERS, run_id).drop(columns=["run_id"])  # the clustering run's
    if clusters.empty:
        raise NoClusteringError(
            f"run {run_id!r} has no rows in gold_clusters; list runs with `issuerisk runs` "
            f'or `issuerisk sql "SELECT DISTINCT run_id FROM issuerisk.gold_clusters"`'
        )
    issues = tables.read(SILVER_ISSUES, columns=list(ISSUE_COLUMNS)).to_pandas()
    frame = clusters.merge(issues, on=["repository", "number"], how="left")
    unknown = frame["framework"].isna()
    return frame[~unknown].reset_index(drop=True), int(unknown.sum())


def topic_fields(tables: ArrowTables, run_id: str, *fields: str) -> dict[str, dict[int, Any]]:
    """Per field of ``gold_topics`` (``label``, ``pattern_id``, …), its value per cluster of a run, from one read (empty
    when topics did not run)."""
    rows = run_rows(tables, GOLD_TOPICS, run_id, ["cluster", *fields])
    return {f: {int(c): v for c, v in zip(rows["cluster"], rows[f])} for f in fields}


def run_table(spec: TableSpec, rows: list[dict[str, Any]]) -> pa.Table:
    """Rows as an Arrow table of the spec (NaN becomes null)."""
    return pa.Table.from_pylist([{n: _none_if_nan(r.get(n)) for n in spec.names} for r in rows], schema=spec.arrow)


def _none_if_nan(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value


def optional_float(value: Any) -> float | None:
    """A number read from a gold row or frame as a float, None for null or NaN (rows of older runs, pandas' missing)."""
    return None if value is None or pd.isna(value) else float(value)


def profile_source(tables: ArrowTables, run_id: str) -> str | None:
    """The run whose data profile the report shows: ``run_id``'s own, else the newest one made before it (None:
    none)."""
    run_id = clustering_run(tables, run_id)
    ids = sorted({r for r in tables.read(GOLD_PROFILE, columns=["run_id"]).column("run_id").to_pylist() if r <= run_id})
    return ids[-1] if ids else None
