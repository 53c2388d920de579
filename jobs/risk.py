"""``issuerisk risk``: the reference risk matrix per cluster, for all frameworks together and each alone.

Reads one clustering run from ``gold_clusters`` joined to ``silver_issues``
(framework, closed flag, resolution time) and the run's topic labels, computes
:func:`jobs.risk_matrix.assess` per scope and MERGEs ``gold_risk``. The
loaders here are shared with ``jobs.topics``, ``jobs.compare`` and ``jobs.report``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from conf import Config
from issuerisk.context import Context
from issuerisk.display import table
from jobs.risk_matrix import ClusterRisk, assess
from jobs.runs import latest_run_id
from schemas import TableSpec
from schemas.risk import GOLD_RISK

FRAMEWORKS = ("pytorch", "tensorflow", "keras")
RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9_.\-]+")
ISSUE_COLUMNS = ("repository", "number", "framework", "is_closed", "resolution_hours", "html_url", "title")


class NoClusteringError(RuntimeError):
    """There is no clustering run to analyse."""


def resolve_run_id(cfg: Config, run_id: str | None) -> str:
    """The clustering run to analyse: the one given, else the newest in ``gold_clusters``.

    Raises:
        NoClusteringError: ``gold_clusters`` is empty.
        ValueError: ``run_id`` is not shaped like a run id (letters, digits, '-', '_', '.').
    """
    if run_id is not None and not RUN_ID_PATTERN.fullmatch(run_id):
        raise ValueError(f"run id {run_id!r} is not valid; run ids look like 20260101T120000Z-1a2b3c4d")
    chosen = run_id or latest_run_id(cfg, "gold_clusters")
    if chosen is None:
        raise NoClusteringError("gold_clusters holds no run; run `issuerisk cluster` (or `issuerisk run`) first")
    return chosen


def load_run_issues(ctx: Context, run_id: str) -> tuple[pd.DataFrame, int]:
    """One clustering run's issues with their silver facts, as pandas.

    Returns:
        The frame (``gold_clusters`` columns plus :data:`ISSUE_COLUMNS`) and the
        number of clustered issues missing from ``silver_issues``, which are left out.

    Raises:
        NoClusteringError: the run has no rows in ``gold_clusters``.
    """
    from jobs.tables import read

    spark = ctx.spark
    ctx.run.read("gold_clusters", "silver_issues")
    clusters = read(spark, ctx.cfg, "gold_clusters").where(f"run_id = '{run_id}'").drop("run_id")
    issues = read(spark, ctx.cfg, "silver_issues").select(*ISSUE_COLUMNS)
    frame = clusters.join(issues, ["repository", "number"], "left").toPandas()
    if frame.empty:
        raise NoClusteringError(f"run {run_id!r} has no rows in gold_clusters; list runs with `issuerisk sql \"SELECT DISTINCT run_id FROM {ctx.cfg.project.database}.gold_clusters\"`")
    unknown = frame["framework"].isna()
    return frame[~unknown].reset_index(drop=True), int(unknown.sum())


def load_labels(ctx: Context, run_id: str) -> dict[int, str]:
    """Topic label per cluster of a run from ``gold_topics`` (empty when topics did not run)."""
    from jobs.tables import read

    rows = read(ctx.spark, ctx.cfg, "gold_topics").where(f"run_id = '{run_id}'").select("cluster", "label").collect()
    return {int(r["cluster"]): r["label"] for r in rows}


def excluded_clusters(ids: Iterable[int], keywords: Iterable[str], labels: Mapping[int, str]) -> set[int]:
    """Clusters that are not ML problems: listed by id, or whose label holds one of the keywords as a word."""
    words = [w.lower() for w in keywords]
    by_label = {c for c, label in labels.items() if label and any(re.search(rf"\b{re.escape(w)}\b", label.lower()) for w in words)}
    return set(ids) | by_label


def scopes(issues: pd.DataFrame) -> list[str]:
    """``all`` and every framework among pytorch/tensorflow/keras that has clustered issues."""
    present = set(issues["framework"])
    return ["all", *(f for f in FRAMEWORKS if f in present)]


def assess_scopes(issues: pd.DataFrame, excluded: Iterable[int]) -> dict[str, list[ClusterRisk]]:
    """The risk matrix of every scope."""
    excluded = list(excluded)
    return {
        scope: assess(issues if scope == "all" else issues[issues["framework"] == scope], excluded)
        for scope in scopes(issues)
    }


def risk_rows(run_id: str, matrices: Mapping[str, list[ClusterRisk]], labels: Mapping[int, str]) -> list[dict[str, Any]]:
    """``gold_risk`` rows of every scope's matrix."""
    return [
        {**r.to_dict(), "run_id": run_id, "scope": scope, "label": labels.get(r.cluster)}
        for scope, rows in matrices.items() for r in rows
    ]


def write_run_rows(ctx: Context, spec: TableSpec, rows: list[dict[str, Any]], run_id: str) -> None:
    """Make the run's rows of a gold table exactly ``rows``: one MERGE that upserts them and deletes the run's stale keys."""
    from delta.tables import DeltaTable

    from jobs.tables import conform, ensure_table, qualified

    spark = ctx.spark
    ensure_table(spark, ctx.cfg, spec)
    clean = [tuple(_none_if_nan(row.get(name)) for name in spec.names) for row in rows]
    source = conform(spark.createDataFrame(clean, spec.spark), spec)
    on = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in spec.key)
    (
        DeltaTable.forName(spark, qualified(ctx.cfg, spec.name)).alias("t")
        .merge(source.alias("s"), on)
        .whenMatchedUpdateAll()
        .whenNotMatchedInsertAll()
        .whenNotMatchedBySourceDelete(condition=f"t.run_id = '{run_id}'")
        .execute()
    )
    ctx.run.wrote(spec.name)


def _none_if_nan(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value


def run(ctx: Context, run_id: str | None = None) -> dict[str, Any]:
    """Compute and MERGE ``gold_risk`` for one clustering run (default: the latest).

    Raises:
        NoClusteringError: no clustering run, or the given one has no rows.
        jobs.risk_matrix.RiskInputError: a cluster's resolution times are invalid.
    """
    run_id = resolve_run_id(ctx.cfg, run_id)
    issues, missing = load_run_issues(ctx, run_id)
    labels = load_labels(ctx, run_id)
    excluded = excluded_clusters(ctx.cfg.risk.excluded_clusters, ctx.cfg.risk.excluded_keywords, labels)
    matrices = assess_scopes(issues, excluded)
    rows = risk_rows(run_id, matrices, labels)
    write_run_rows(ctx, GOLD_RISK, rows, run_id)
    table(
        f"Top risks of run {run_id} (all frameworks)",
        ["cluster", "label", "n", "P_k", "P", "MTTR h", "median h", "open", "I", "grade", "action"],
        [(r.cluster, labels.get(r.cluster, ""), r.n, r.p_k, r.likelihood, r.mttr_hours, r.median_ttr_hours, r.open_share, r.impact, r.grade, r.action)
         for r in matrices["all"][:10]],
    )
    return {
        "run_id": run_id,
        "rows": len(rows),
        "scopes": {scope: len(rows_) for scope, rows_ in matrices.items()},
        "excluded_clusters": sorted(excluded),
        "noise_issues": int((issues["cluster"] == -1).sum()),
        "missing_from_silver": missing,
    }
