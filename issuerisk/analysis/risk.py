"""Stage ``risk``: the reference risk matrix per cluster, for all frameworks together and each alone.

Reads one clustering run from ``gold_clusters`` joined to ``silver_issues``
(framework, closed flag, resolution time) and the run's topic labels, computes
:func:`issuerisk.analysis.risk_matrix.assess` per scope and replaces the run's
``gold_risk`` rows.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from issuerisk.analysis.gold import resolve_run_id, run_issues, run_table, topic_labels
from issuerisk.analysis.risk_matrix import ClusterRisk, assess
from issuerisk.constants import FRAMEWORKS
from issuerisk.display import table
from issuerisk.schemas.risk import GOLD_RISK
from issuerisk.stage import RUN_ID, Stage


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


def run(ctx, run_id: str | None = None) -> dict[str, Any]:
    """Compute ``gold_risk`` for one clustering run (default: the latest) and replace the run's rows.

    Raises:
        NoClusteringError: no clustering run, or the given one has no rows.
        issuerisk.analysis.risk_matrix.RiskInputError: a cluster's resolution times are invalid.
    """
    tables = ctx.lake.arrow
    run_id = resolve_run_id(tables, run_id)
    ctx.run.read("gold_clusters", "silver_issues", "gold_topics")
    issues, missing = run_issues(tables, run_id)
    labels = topic_labels(tables, run_id)
    excluded = excluded_clusters(ctx.cfg.risk.excluded_clusters, ctx.cfg.risk.excluded_keywords, labels)
    matrices = assess_scopes(issues, excluded)
    rows = risk_rows(run_id, matrices, labels)
    tables.merge(GOLD_RISK, run_table(GOLD_RISK, rows), how="replace_run", run_id=run_id)
    ctx.run.wrote(GOLD_RISK.name)
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


STAGE = Stage(
    "risk", "Risk matrix per cluster, per framework and overall, into gold_risk", run,
    reads=("gold_clusters", "silver_issues", "gold_topics"), writes=(GOLD_RISK.name,), options=(RUN_ID,),
)
