"""``issuerisk compare``: how the frameworks differ on one joint clustering.

The clusters of a run come from one clustering over every framework's issues,
so a cluster is the same defect pattern in each. Per cluster and framework
(pytorch, tensorflow, keras; repositories of unknown framework are left out)
this gives the count, the share of the framework's clustered issues, the count
expected if cluster and framework were independent, the adjusted standardized
residual of a chi-square test of independence (|r| > 1.96: over- or
under-represented at the 5 % level) and the cluster's grade in that framework's
own risk matrix. Noise and excluded clusters are left out, as in the risk matrix.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from issuerisk.context import Context
from issuerisk.display import table
from jobs.risk import FRAMEWORKS, assess_scopes, excluded_clusters, load_labels, load_run_issues, resolve_run_id, write_run_rows
from jobs.risk_matrix import NOISE, ClusterRisk
from schemas.risk import GOLD_FRAMEWORK_COMPARISON

SIGNIFICANT = 1.96


@dataclass(frozen=True)
class ChiSquare:
    """The test over the whole table; None values when fewer than two clusters or frameworks have issues."""

    chi2: float | None
    p_value: float | None
    dof: int | None


def contingency(issues: pd.DataFrame, excluded: Iterable[int] = (), frameworks: Iterable[str] = FRAMEWORKS) -> pd.DataFrame:
    """Counts of clustered issues per cluster (rows) and framework (columns), noise and excluded clusters left out."""
    frameworks = list(frameworks)
    kept = issues[(issues["cluster"] != NOISE) & ~issues["cluster"].isin(list(excluded)) & issues["framework"].isin(frameworks)]
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


def comparison_rows(run_id: str, counts: pd.DataFrame, matrices: Mapping[str, list[ClusterRisk]]) -> tuple[list[dict[str, Any]], ChiSquare]:
    """``gold_framework_comparison`` rows: one per cluster and framework."""
    expected, residuals, test = chi_square(counts)
    totals = counts.sum(axis=0)
    grades = {(scope, r.cluster): r.grade for scope, rows in matrices.items() for r in rows}
    rows = [
        {
            "run_id": run_id, "cluster": int(cluster), "framework": framework, "n": int(counts.at[cluster, framework]),
            "share": float(counts.at[cluster, framework] / totals[framework]) if totals[framework] else None,
            "expected": float(expected.at[cluster, framework]), "std_residual": float(residuals.at[cluster, framework]),
            "grade": grades.get((framework, int(cluster))), "chi2": test.chi2, "p_value": test.p_value,
        }
        for cluster in counts.index for framework in counts.columns
    ]
    return rows, test


def run(ctx: Context, run_id: str | None = None) -> dict[str, Any]:
    """Compare the frameworks on one clustering run (default: the latest) and MERGE ``gold_framework_comparison``.

    Raises:
        jobs.risk.NoClusteringError: no clustering run, or the given one has no rows.
    """
    run_id = resolve_run_id(ctx.cfg, run_id)
    issues, missing = load_run_issues(ctx, run_id)
    labels = load_labels(ctx, run_id)
    excluded = excluded_clusters(ctx.cfg.risk.excluded_clusters, ctx.cfg.risk.excluded_keywords, labels)
    counts = contingency(issues, excluded)
    rows, test = comparison_rows(run_id, counts, assess_scopes(issues, excluded))
    write_run_rows(ctx, GOLD_FRAMEWORK_COMPARISON, rows, run_id)
    notable = sorted((r for r in rows if abs(r["std_residual"]) > SIGNIFICANT), key=lambda r: -abs(r["std_residual"]))
    table(
        f"Over/under-represented patterns, run {run_id} (chi2={test.chi2}, p={test.p_value})",
        ["cluster", "label", "framework", "n", "share", "expected", "residual", "grade"],
        [(r["cluster"], labels.get(r["cluster"], ""), r["framework"], r["n"], r["share"], r["expected"], r["std_residual"], r["grade"]) for r in notable[:15]],
    )
    return {
        "run_id": run_id, "rows": len(rows), "clusters": int(counts.shape[0]), "frameworks": list(counts.columns),
        "chi2": test.chi2, "p_value": test.p_value, "dof": test.dof, "significant_cells": len(notable),
        "unknown_framework_issues": int((issues["framework"] == "unknown").sum()), "missing_from_silver": missing,
    }
