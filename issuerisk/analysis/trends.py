"""Stage ``trends``: is a pattern growing or fading? Issues per pattern per quarter and framework, with a trend test.

Per cluster and scope (all frameworks, and each framework alone) the clustered issues are counted per calendar
quarter of creation, every quarter from the scope's first to its last included (zeros too). The trend is that of
the pattern's *share* of each quarter's issues, so a tracker that grows does not make every pattern grow: a
Mann-Kendall test (Kendall's tau of the share against the quarter's index, two-sided p-value). A series is tested
only with ``trends.min_issues`` issues over ``trends.min_periods`` quarters that hold one; else its status is
``too few``. Then, in this order:

- ``emerging``: at least ``trends.emerging_share`` of its issues in the scope's last ``trends.recent_periods``
  quarters (a pattern that is new, whatever its test says);
- ``fading``: none of its issues in those quarters, or a significant downward trend (p < ``trends.alpha``);
- ``growing``: a significant upward trend;
- ``steady``: the rest.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from issuerisk.analysis.risk import scopes
from issuerisk.conf.settings import TrendsConfig
from issuerisk.constants import NOISE
from issuerisk.context import Context
from issuerisk.display import table
from issuerisk.gold import clustering_run, resolve_run_id, run_issues, run_rows, run_table, topic_fields
from issuerisk.schemas.gold import GOLD_CLUSTERS, GOLD_RISK, GOLD_TOPICS, GOLD_TRENDS
from issuerisk.schemas.silver import SILVER_ISSUES
from issuerisk.stage import RUN_ID, Stage

STATUS_ORDER = ("emerging", "growing", "steady", "fading", "too few")


def mann_kendall(values: np.ndarray) -> tuple[float, float]:
    """Kendall's tau of ``values`` against their order and its two-sided p-value (Mann-Kendall trend test)."""
    from scipy.stats import kendalltau

    if len(values) < 3 or np.ptp(values) == 0:
        return 0.0, 1.0
    result = kendalltau(np.arange(len(values)), values)
    return float(result.statistic), float(result.pvalue)


def quarters(created: pd.Series) -> pd.Series:
    """The calendar quarter (``2021Q3``) of each creation time."""
    return pd.to_datetime(created, utc=True).dt.tz_localize(None).dt.to_period("Q")


def series_rows(issues: pd.DataFrame, scope: str, rules: TrendsConfig) -> list[dict[str, Any]]:
    """``gold_trends`` rows of one scope (columns cluster, created_at, noise included) without run and pattern ids."""
    if issues.empty:
        return []
    period = quarters(issues["created_at"])
    span = pd.period_range(period.min(), period.max(), freq="Q")
    totals = period.value_counts().reindex(span, fill_value=0)
    recent = span[-rules.recent_periods :]
    rows = []
    for cluster, own in period[issues["cluster"] != NOISE].groupby(issues["cluster"]):
        counts = own.value_counts().reindex(span, fill_value=0)
        share = (counts / totals.where(totals > 0)).fillna(0.0).to_numpy()
        n = int(counts.sum())
        recent_share = float(counts[recent].sum() / n) if n else 0.0
        tested = n >= rules.min_issues and int((counts > 0).sum()) >= rules.min_periods
        tau, p = mann_kendall(share) if tested else (None, None)
        if not tested:
            status = "too few"
        elif recent_share >= rules.emerging_share:
            status = "emerging"
        elif recent_share == 0 or (p < rules.alpha and tau < 0):
            status = "fading"
        elif p < rules.alpha and tau > 0:
            status = "growing"
        else:
            status = "steady"
        for q, count, total, value in zip(span, counts.to_numpy(), totals.to_numpy(), share):
            rows.append(
                {
                    "framework": scope,
                    "cluster": int(cluster),
                    "period": str(q),
                    "n": int(count),
                    "total": int(total),
                    "share": round(float(value), 6),
                    "tau": None if tau is None else round(tau, 4),
                    "p_value": None if p is None else round(p, 6),
                    "recent_share": round(recent_share, 4),
                    "status": status,
                }
            )
    return rows


def run(ctx: Context, run_id: str | None = None) -> dict[str, Any]:
    """Count one clustering run's issues (default: the latest) per pattern and quarter, test each pattern's trend
    and replace the run's ``gold_trends`` rows."""
    tables = ctx.lake.arrow
    run_id = clustering_run(tables, resolve_run_id(tables, run_id))  # of the clusters, whichever grading is named
    issues, missing = run_issues(tables, run_id)
    pattern = topic_fields(tables, run_id, "pattern_id")["pattern_id"]
    rows = []
    for scope in scopes(issues):
        in_scope = issues if scope == "all" else issues[issues["framework"] == scope]
        rows += series_rows(in_scope, scope, ctx.cfg.trends)
    for row in rows:
        row.update(run_id=run_id, pattern_id=pattern.get(row["cluster"]))
    tables.merge(GOLD_TRENDS, run_table(GOLD_TRENDS, rows), how="replace_run", run_id=run_id)
    risk = run_rows(tables, GOLD_RISK, run_id, ["scope", "cluster", "grade", "label"])
    graded = risk[(risk["scope"] == "all") & risk["grade"].notna()]
    series = {r["cluster"]: r for r in rows if r["framework"] == "all"}  # the summary repeats on every row
    shown = sorted(
        (
            series[c] | {"label": label, "grade": grade}
            for c, label, grade in zip(graded["cluster"], graded["label"], graded["grade"])
            if c in series
        ),
        key=lambda r: (STATUS_ORDER.index(r["status"]), -(r["tau"] or 0)),
    )
    table(
        f"Trends of the graded patterns of run {run_id} (share of each quarter's issues, all frameworks)",
        ["cluster", "label", "grade", "status", "tau", "p", "recent share"],
        [
            (r["cluster"], r["label"] or "", r["grade"], r["status"], r["tau"], r["p_value"], r["recent_share"])
            for r in shown
        ],
    )
    statuses = [r["status"] for r in series.values()]
    return {
        "run_id": run_id,
        "rows": len(rows),
        "periods": len({r["period"] for r in rows}),
        "status": {s: statuses.count(s) for s in STATUS_ORDER if s in statuses},
        "missing_from_silver": missing,
    }


STAGE = Stage(
    "trends",
    "Issues per pattern per quarter and framework, each pattern's trend (emerging, growing, steady, fading) into "
    "gold_trends",
    run,
    reads=(GOLD_CLUSTERS.name, SILVER_ISSUES.name, GOLD_TOPICS.name, GOLD_RISK.name),
    writes=(GOLD_TRENDS.name,),
    options=(RUN_ID,),
    sections=("trends",),
)
