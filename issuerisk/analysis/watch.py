"""Command ``watch``: the patterns whose new issues exceed their expected rate, stored and signalled by exit status.

New issues are those ``issuerisk assign`` placed on a clustering run (``gold_assignments``; with ``--since``, those
created on or after that date). A pattern's expected share of them is its share of the run's issues in the last
``trends.recent_periods`` quarters (``gold_trends``, all frameworks: the trend model's recent level, not its
lifetime average). Under that share, the new issues on the pattern are binomial; the pattern alerts when at least
``watch.min_issues`` of them landed there and the one-sided p-value of so many is below ``watch.alpha`` (Bonferroni
over the patterns tested). Alerts go to ``gold_alerts`` with the new issues' links; the command exits with status
:data:`ALERT_EXIT` when any fired (0 when none), so a scheduler can act on it.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pandas as pd

from issuerisk.constants import NOISE
from issuerisk.context import Context
from issuerisk.display import table
from issuerisk.gold import clustering_run, resolve_run_id, run_rows, run_table, topic_fields
from issuerisk.schemas.gold import GOLD_ALERTS, GOLD_ASSIGNMENTS, GOLD_CLUSTERS, GOLD_RISK, GOLD_TOPICS, GOLD_TRENDS
from issuerisk.schemas.silver import SILVER_ISSUES
from issuerisk.stage import RUN_ID, Option, Stage

ALERT_EXIT = 3
"""Exit status of ``issuerisk watch`` when an alert fired (1 is an error, 2 a usage error)."""


def expected_shares(trends: pd.DataFrame, recent_periods: int) -> dict[int, float]:
    """Per cluster, its share of the run's issues in the last ``recent_periods`` quarters (``gold_trends`` rows of
    scope all)."""
    rows = trends[trends["framework"] == "all"]
    if rows.empty:
        return {}
    recent = sorted(rows["period"].unique())[-recent_periods:]
    last = rows[rows["period"].isin(recent)]
    totals = last.drop_duplicates("period")["total"].sum()
    return {int(c): float(g["n"].sum() / totals) if totals else 0.0 for c, g in last.groupby("cluster")}


def alerts(placed: pd.DataFrame, shares: dict[int, float], min_issues: int, alpha: float) -> list[dict[str, Any]]:
    """One row per pattern with new issues: observed, expected, the binomial tail p-value and whether it alerts.

    Args:
        placed: the new issues (cluster per issue, noise included: every new issue counts in the total).
        shares: each pattern's expected share of new issues.
    """
    from scipy.stats import binom

    total = len(placed)
    counts = placed.loc[placed["cluster"] != NOISE, "cluster"].value_counts()
    tested = [int(c) for c in counts.index if int(c) in shares]
    rows = []
    for cluster in sorted(tested):
        observed, share = int(counts[cluster]), shares[cluster]
        p_value = float(binom.sf(observed - 1, total, share)) if share > 0 else 0.0
        rows.append(
            {
                "cluster": cluster,
                "new_issues": observed,
                "all_new_issues": total,
                "expected": round(total * share, 4),
                "p_value": p_value,
                "alert": observed >= min_issues and p_value < alpha / max(len(tested), 1),
            }
        )
    return rows


def run(ctx: Context, run_id: str | None = None, since: str | None = None) -> dict[str, Any]:
    """Test the new issues of the clustering run (default: the latest) per pattern, store and print the alerts."""
    tables, cfg = ctx.lake.arrow, ctx.cfg
    run_id = clustering_run(tables, resolve_run_id(tables, run_id))
    placed = run_rows(tables, GOLD_ASSIGNMENTS, run_id, ["repository", "number", "cluster"])
    issues = tables.read(SILVER_ISSUES, columns=["repository", "number", "created_at", "html_url"]).to_pandas()
    placed = placed.merge(issues, on=["repository", "number"], how="left")
    if since is not None:
        try:
            start = pd.Timestamp(since, tz="UTC")
        except ValueError as exc:
            raise ValueError(f"--since {since!r} is not a date; write it as 2026-12-01") from exc
        placed = placed[placed["created_at"] >= start]
    shares = expected_shares(run_rows(tables, GOLD_TRENDS, run_id), cfg.trends.recent_periods)
    rows = alerts(placed, shares, cfg.watch.min_issues, cfg.watch.alpha)
    topics = topic_fields(tables, run_id, "pattern_id", "label")
    pattern, label = topics["pattern_id"], topics["label"]
    risk = run_rows(tables, GOLD_RISK, run_id, ["scope", "cluster", "grade"])
    grade = {int(c): g for s, c, g in zip(risk["scope"], risk["cluster"], risk["grade"]) if s == "all"}
    now = datetime.now(timezone.utc)
    for row in rows:
        links = placed.loc[placed["cluster"] == row["cluster"], "html_url"].dropna().tolist()
        row.update(
            run_id=run_id,
            window=since or "all",
            pattern_id=pattern.get(row["cluster"]),
            label=label.get(row["cluster"]),
            grade=grade.get(row["cluster"]),
            links=links,
            alerted_by=ctx.run.run_id,
            alerted_at=now,
        )
    tables.merge(GOLD_ALERTS, run_table(GOLD_ALERTS, rows))
    fired = [r for r in rows if r["alert"]]
    table(
        f"Patterns of run {run_id} whose new issues exceed their expected rate ({len(placed):,} new issues"
        f"{' since ' + since if since else ''}; binomial p below watch.alpha={cfg.watch.alpha} over {len(rows)} "
        "tested)",
        ["cluster", "pattern", "grade", "new", "expected", "p", "links"],
        [
            (
                r["cluster"],
                r["label"] or "",
                r["grade"] or "",
                r["new_issues"],
                r["expected"],
                f"{r['p_value']:.2g}",
                " ".join(r["links"][:3]) + (" …" if len(r["links"]) > 3 else ""),
            )
            for r in sorted(fired, key=lambda r: r["p_value"])
        ],
    )
    return {
        "run_id": run_id,
        "new_issues": len(placed),
        "patterns_tested": len(rows),
        "alerts": len(fired),
        "exit_status": ALERT_EXIT if fired else 0,
    }


STAGE = Stage(
    "watch",
    f"Alert on the patterns whose newly assigned issues exceed their expected rate (gold_alerts); exits "
    f"{ALERT_EXIT} when an alert fired, 0 when none",
    run,
    reads=(
        GOLD_CLUSTERS.name,
        GOLD_ASSIGNMENTS.name,
        GOLD_TRENDS.name,
        GOLD_TOPICS.name,
        GOLD_RISK.name,
        SILVER_ISSUES.name,
    ),
    writes=(GOLD_ALERTS.name,),
    options=(RUN_ID, Option(("--since",), "only new issues created on or after this date (e.g. 2026-12-01)")),
    sections=("watch", "trends"),
)
