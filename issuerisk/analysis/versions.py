"""Stage ``versions``: which framework versions each issue reports, and which patterns hit which version.

Every silver issue's title and body are read by :mod:`issuerisk.text.versions` (``silver_issue_versions``: the
framework, major.minor, the rule that found it and the text). Then, for one clustering run, per framework, the
clustered issues that report a version are tabulated version x cluster (noise is a column, so a version whose issues
are mostly noise does not inflate the patterns): each graded pattern's share of a version's issues with a 95% Wilson
interval, and the adjusted standardized residual of the cell, as in the framework comparison. A pattern is
over-represented in a version when its residual passes ``versions.residual`` and at least
``versions.min_pattern_issues`` of the version's issues are in it (a residual of one or two issues is noise). Only
versions with ``versions.min_issues`` clustered issues are tested; an issue that reports two versions counts in both.
Versions are tabulated twice: per major.minor, and per major (``2.x``, with the bare ``TF2``), which small runs can
still test.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from issuerisk.analysis.compare import chi_square
from issuerisk.conf.settings import VersionsConfig
from issuerisk.constants import FRAMEWORKS, NOISE
from issuerisk.context import Context
from issuerisk.display import table
from issuerisk.gold import clustering_run, resolve_run_id, run_rows, run_table, topic_fields
from issuerisk.schemas.gold import GOLD_CLUSTERS, GOLD_RISK, GOLD_TOPICS, GOLD_VERSION_RISK
from issuerisk.schemas.silver import SILVER_ISSUE_VERSIONS, SILVER_ISSUES
from issuerisk.stage import RUN_ID, Stage
from issuerisk.text.versions import extract, version_key


def issue_versions(issues: pd.DataFrame, run_id: str) -> list[dict[str, Any]]:
    """``silver_issue_versions`` rows of issues (columns repository, number, title, body)."""
    return [
        {
            "repository": repository,
            "number": int(number),
            "framework": v.framework,
            "version": v.version,
            "found_in": v.where,
            "evidence": v.evidence,
            "run_id": run_id,
        }
        for repository, number, title, body in zip(
            issues["repository"], issues["number"], issues["title"], issues["body"]
        )
        for v in extract(f"{title}\n{body or ''}")
    ]


def wilson(n: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of the proportion ``n / total``."""
    if total == 0:
        return 0.0, 1.0
    p = n / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * np.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return max(0.0, float(centre - half)), min(1.0, float(centre + half))


def by_major(versions: pd.DataFrame) -> pd.DataFrame:
    """Each issue's reported majors as ``M.x`` (``2.3`` and a bare ``2`` both give ``2.x``), once per issue."""
    majors = versions.assign(version=versions["version"].str.split(".").str[0] + ".x")
    return majors.drop_duplicates(["repository", "number", "framework", "version"])


def version_rows(
    clusters: pd.DataFrame, versions: pd.DataFrame, graded: set[int], rules: VersionsConfig
) -> list[dict[str, Any]]:
    """``gold_version_risk`` rows without run and pattern ids, per major.minor and per major (``2.x``).

    Args:
        clusters: the run's issues (repository, number, cluster; noise included).
        versions: ``silver_issue_versions`` rows (repository, number, framework, version).
        graded: the clusters that carry a grade; rows are written for these only.
    """
    minors = versions[versions["version"].str.contains(".", regex=False)]
    rows = []
    for level in (minors, by_major(versions)):
        joined = level.merge(clusters[["repository", "number", "cluster"]], on=["repository", "number"])
        for framework in FRAMEWORKS:
            own = joined[joined["framework"] == framework]
            counts = pd.crosstab(own["version"], own["cluster"])
            rows += _cells(framework, counts[counts.sum(axis=1) >= rules.min_issues], graded, rules)
    return rows


def _cells(framework: str, counts: pd.DataFrame, graded: set[int], rules: VersionsConfig) -> list[dict[str, Any]]:
    if counts.empty:
        return []
    expected, residuals, _ = chi_square(counts)
    rows = []
    for version in sorted(counts.index, key=version_key):
        total = int(counts.loc[version].sum())
        for cluster in sorted(graded):
            present = cluster in counts.columns
            n = int(counts.loc[version, cluster]) if present else 0
            low, high = wilson(n, total)
            residual = float(residuals.loc[version, cluster]) if present else np.nan
            rows.append(
                {
                    "framework": framework,
                    "version": version,
                    "cluster": int(cluster),
                    "n": n,
                    "version_n": total,
                    "share": round(n / total, 6),
                    "share_low": round(low, 6),
                    "share_high": round(high, 6),
                    "expected": round(float(expected.loc[version, cluster]), 4) if present else None,
                    "residual": None if np.isnan(residual) else round(residual, 4),
                    "over_represented": bool(
                        not np.isnan(residual) and residual > rules.residual and n >= rules.min_pattern_issues
                    ),
                }
            )
    return rows


def run(ctx: Context, run_id: str | None = None) -> dict[str, Any]:
    """Extract every silver issue's framework versions, then tabulate one clustering run's (default: the latest)
    graded patterns per version into ``gold_version_risk``."""
    tables = ctx.lake.arrow
    issues = tables.read(SILVER_ISSUES, columns=["repository", "number", "title", "body"]).to_pandas()
    extracted = issue_versions(issues, ctx.run.run_id)
    tables.overwrite(SILVER_ISSUE_VERSIONS, pa.Table.from_pylist(extracted, schema=SILVER_ISSUE_VERSIONS.arrow))
    versions = pd.DataFrame(extracted, columns=SILVER_ISSUE_VERSIONS.names)

    run_id = clustering_run(tables, resolve_run_id(tables, run_id))
    clusters = run_rows(tables, GOLD_CLUSTERS, run_id, ["repository", "number", "cluster"])
    risk = run_rows(tables, GOLD_RISK, run_id, ["scope", "cluster", "grade"])
    graded = set(risk.loc[(risk["scope"] == "all") & risk["grade"].notna(), "cluster"].astype(int)) - {NOISE}
    topics = topic_fields(tables, run_id, "pattern_id", "label")
    pattern, label = topics["pattern_id"], topics["label"]
    rows = version_rows(clusters, versions, graded, ctx.cfg.versions)
    for row in rows:
        row.update(run_id=run_id, pattern_id=pattern.get(row["cluster"]))
    tables.merge(GOLD_VERSION_RISK, run_table(GOLD_VERSION_RISK, rows), how="replace_run", run_id=run_id)
    over = [r for r in rows if r["over_represented"]]
    table(
        f"Patterns over-represented in a framework version, run {run_id} (adjusted residual > "
        f"{ctx.cfg.versions.residual})",
        ["framework", "version", "issues", "cluster", "pattern", "n", "share [95%]", "residual"],
        [
            (
                r["framework"],
                r["version"],
                r["version_n"],
                r["cluster"],
                label.get(r["cluster"]) or "",
                r["n"],
                f"{r['share']:.2f} [{r['share_low']:.2f}, {r['share_high']:.2f}]",
                r["residual"],
            )
            for r in sorted(over, key=lambda r: (r["framework"], version_key(r["version"]), -r["residual"]))
        ],
    )
    reporting = versions.drop_duplicates(["repository", "number"])
    clustered = reporting.merge(clusters, on=["repository", "number"])
    return {
        "run_id": run_id,
        "issues_with_version": len(reporting),
        "clustered_with_version": len(clustered),
        "versions_tested": len({(r["framework"], r["version"]) for r in rows}),
        "over_represented": len(over),
        "found_in": versions["found_in"].value_counts().to_dict(),
    }


STAGE = Stage(
    "versions",
    "The framework versions each issue reports (silver_issue_versions) and each graded pattern's share per version, "
    "with the versions where it is over-represented (gold_version_risk)",
    run,
    reads=(SILVER_ISSUES.name, GOLD_CLUSTERS.name, GOLD_RISK.name, GOLD_TOPICS.name),
    writes=(SILVER_ISSUE_VERSIONS.name, GOLD_VERSION_RISK.name),
    options=(RUN_ID,),
    sections=("versions",),
)
