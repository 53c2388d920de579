"""Stage ``compare``: how the frameworks differ on one joint clustering.

The clusters of a run come from one clustering over every framework's issues,
so a cluster is the same defect pattern in each. Per cluster and framework
(pytorch, tensorflow, keras; repositories of unknown framework are left out)
this gives the count, the share of the framework's clustered issues, the count
expected if cluster and framework were independent, the adjusted standardized
residual of a chi-square test of independence (|r| > 1.96: over- or
under-represented at the 5 % level) and the cluster's grade in that framework's
own risk matrix, read from ``gold_risk``. Only the clusters the risk stage
graded over all frameworks are compared (noise and excluded clusters are left out).
The same test runs on fault categories (``gold_topics.category``): each
framework's share of its graded defect issues per category, into
``gold_category_comparison``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from issuerisk.analysis.naming import UNMAPPED
from issuerisk.constants import FRAMEWORKS, UNKNOWN_FRAMEWORK
from issuerisk.context import Context
from issuerisk.display import table
from issuerisk.gold import resolve_run_id, run_issues, run_rows, run_table, topic_fields
from issuerisk.schemas.gold import (
    GOLD_CATEGORY_COMPARISON,
    GOLD_CLUSTERS,
    GOLD_FRAMEWORK_COMPARISON,
    GOLD_RISK,
    GOLD_TOPICS,
)
from issuerisk.schemas.silver import SILVER_ISSUES
from issuerisk.stage import RUN_ID, Stage

SIGNIFICANT = 1.96


@dataclass(frozen=True)
class ChiSquare:
    """The test over the whole table; None values when fewer than two clusters or frameworks have issues."""

    chi2: float | None
    p_value: float | None
    dof: int | None


class NoRiskError(RuntimeError):
    """The run has no risk matrix to compare on."""


def contingency(issues: pd.DataFrame, clusters: Iterable[int], frameworks: Iterable[str] = FRAMEWORKS) -> pd.DataFrame:
    """Counts of the issues of ``clusters`` per cluster (rows) and framework (columns); other frameworks left out."""
    frameworks = list(frameworks)
    kept = issues[issues["cluster"].isin(list(clusters)) & issues["framework"].isin(frameworks)]
    counts = pd.crosstab(kept["cluster"], kept["framework"])
    return counts.reindex(columns=[f for f in frameworks if f in counts.columns], fill_value=0).astype(int)


def chi_square(counts: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, ChiSquare]:
    """Expected counts and adjusted standardized residuals of a contingency table.

    The residual of a cell is ``(O - E) / sqrt(E (1 - row/N) (1 - col/N))``,
    approximately standard normal under independence. Rows or columns without
    issues are left out of the test (their residuals are NaN).

    Returns:
        Expected counts, residuals (both shaped like ``counts``) and the test.
    """
    from scipy.stats import chi2_contingency

    expected = pd.DataFrame(np.nan, index=counts.index, columns=counts.columns)
    residuals = expected.copy()
    live = counts.loc[counts.sum(axis=1) > 0, counts.sum(axis=0) > 0]
    if live.shape[0] < 2 or live.shape[1] < 2:
        return expected, residuals, ChiSquare(None, None, None)
    observed = live.to_numpy(dtype=float)
    stat, p_value, dof, exp = chi2_contingency(observed, correction=False)
    total = observed.sum()
    rows = observed.sum(axis=1, keepdims=True) / total
    cols = observed.sum(axis=0, keepdims=True) / total
    adjusted = (observed - exp) / np.sqrt(exp * (1 - rows) * (1 - cols))
    expected.loc[live.index, live.columns] = exp
    residuals.loc[live.index, live.columns] = adjusted
    return expected, residuals, ChiSquare(float(stat), float(p_value), int(dof))


def comparison_rows(
    run_id: str, counts: pd.DataFrame, grades: Mapping[tuple[str, int], str | None]
) -> tuple[list[dict[str, Any]], ChiSquare]:
    """``gold_framework_comparison`` rows: one per cluster and framework, with the grade of (framework, cluster)."""
    expected, residuals, test = chi_square(counts)
    totals = counts.sum(axis=0)
    rows = [
        {
            "run_id": run_id,
            "cluster": int(cluster),
            "framework": framework,
            "n": int(counts.at[cluster, framework]),
            "share": float(counts.at[cluster, framework] / totals[framework]) if totals[framework] else None,
            "expected": float(expected.at[cluster, framework]),
            "std_residual": float(residuals.at[cluster, framework]),
            "grade": grades.get((framework, int(cluster))),
            "chi2": test.chi2,
            "p_value": test.p_value,
        }
        for cluster in counts.index
        for framework in counts.columns
    ]
    return rows, test


def category_rows(run_id: str, issues: pd.DataFrame, category_of: Mapping[int, str]) -> list[dict[str, Any]]:
    """``gold_category_comparison`` rows: the graded clusters' issues per fault category and framework, tested like the
    clusters."""
    frame = issues.assign(category=issues["cluster"].map(lambda c: category_of.get(int(c), UNMAPPED)))
    frame = frame[frame["framework"].isin(FRAMEWORKS)]
    if frame.empty:
        return []
    counts = pd.crosstab(frame["category"], frame["framework"])
    counts = counts.reindex(columns=[f for f in FRAMEWORKS if f in counts.columns], fill_value=0).astype(int)
    expected, residuals, test = chi_square(counts)
    totals = counts.sum(axis=0)
    clusters = frame.groupby("category")["cluster"].nunique()
    return [
        {
            "run_id": run_id,
            "category": category,
            "framework": framework,
            "n": int(counts.at[category, framework]),
            "share": float(counts.at[category, framework] / totals[framework]) if totals[framework] else None,
            "expected": float(expected.at[category, framework]),
            "std_residual": float(residuals.at[category, framework]),
            "clusters": int(clusters[category]),
            "chi2": test.chi2,
            "p_value": test.p_value,
        }
        for category in counts.index
        for framework in counts.columns
    ]


def run(ctx: Context, run_id: str | None = None) -> dict[str, Any]:
    """Compare the frameworks on one clustering run (default: the latest) and replace its ``gold_framework_comparison``
    rows.

    Raises:
        NoClusteringError: no clustering run, or the given one has no rows.
        NoRiskError: the run has no ``gold_risk`` rows yet.
    """
    tables = ctx.lake.arrow
    run_id = resolve_run_id(tables, run_id)
    issues, missing = run_issues(tables, run_id)
    risk = run_rows(tables, GOLD_RISK, run_id, ["scope", "cluster", "grade", "excluded_reason"])
    if risk.empty:
        raise NoRiskError(f"run {run_id!r} has no rows in gold_risk; run `issuerisk risk {run_id}` first")
    labels = topic_fields(tables, run_id, "label")["label"]
    grades = {
        (scope, int(cluster)): grade
        for scope, cluster, grade in risk[["scope", "cluster", "grade"]].itertuples(index=False)
    }
    assessed = risk[(risk["scope"] == "all") & risk["excluded_reason"].isna()]
    counts = contingency(issues, sorted(assessed["cluster"].astype(int)))
    rows, test = comparison_rows(run_id, counts, grades)
    tables.merge(
        GOLD_FRAMEWORK_COMPARISON, run_table(GOLD_FRAMEWORK_COMPARISON, rows), how="replace_run", run_id=run_id
    )
    categories = run_rows(tables, GOLD_TOPICS, run_id, ["cluster", "category"])
    by_category = category_rows(
        run_id,
        issues[issues["cluster"].isin(counts.index)],
        dict(zip(categories["cluster"].astype(int), categories["category"].fillna(UNMAPPED))),
    )
    tables.merge(
        GOLD_CATEGORY_COMPARISON, run_table(GOLD_CATEGORY_COMPARISON, by_category), how="replace_run", run_id=run_id
    )
    notable = sorted((r for r in rows if abs(r["std_residual"]) > SIGNIFICANT), key=lambda r: -abs(r["std_residual"]))
    table(
        f"Over/under-represented patterns, run {run_id} (chi2={test.chi2}, p={test.p_value})",
        ["cluster", "label", "framework", "n", "share", "expected", "residual", "grade"],
        [
            (
                r["cluster"],
                labels.get(r["cluster"], ""),
                r["framework"],
                r["n"],
                r["share"],
                r["expected"],
                r["std_residual"],
                r["grade"],
            )
            for r in notable[:15]
        ],
    )
    return {
        "run_id": run_id,
        "rows": len(rows),
        "clusters": int(counts.shape[0]),
        "frameworks": list(counts.columns),
        "chi2": test.chi2,
        "p_value": test.p_value,
        "dof": test.dof,
        "significant_cells": len(notable),
        "unknown_framework_issues": int((issues["framework"] == UNKNOWN_FRAMEWORK).sum()),
        "missing_from_silver": missing,
    }


STAGE = Stage(
    "compare",
    "Cross-framework comparison (shares, chi-square residuals, grades) into gold_framework_comparison",
    run,
    reads=(GOLD_CLUSTERS.name, SILVER_ISSUES.name, GOLD_RISK.name, GOLD_TOPICS.name),
    writes=(GOLD_FRAMEWORK_COMPARISON.name, GOLD_CATEGORY_COMPARISON.name),
    options=(RUN_ID,),
    sections=("risk",),
)
