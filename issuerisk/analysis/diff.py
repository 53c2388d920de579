"""Command ``diff RUN_A RUN_B``: how two clustering runs differ, pattern by pattern.

It prints the adjusted Rand index between the runs' labels on the issues both
clustered (noise counted as a label), the patterns that are new, gone, split or
merged (:func:`issuerisk.analysis.identity.changes`), and, for the patterns both
runs share (same ``pattern_id``), the grade and keyword changes.
"""

from __future__ import annotations

from typing import Any

from issuerisk.analysis.identity import changes
from issuerisk.context import Context
from issuerisk.display import table
from issuerisk.gold import RUN_ID_PATTERN, run_rows
from issuerisk.schemas.gold import GOLD_CLUSTERS, GOLD_RISK, GOLD_TOPICS
from issuerisk.stage import Option, Stage


def _members(frame) -> dict[int, set]:
    return {
        int(c): {(r, int(n)) for r, n in zip(g["repository"], g["number"])}
        for c, g in frame[frame["cluster"] >= 0].groupby("cluster")
    }


def diff(ctx: Context, run_a: str, run_b: str) -> dict[str, Any]:
    """Compare two clustering runs.

    Raises:
        ValueError: a run id is malformed or has no clusters.
    """
    from sklearn.metrics import adjusted_rand_score

    tables = ctx.lake.arrow
    for run_id in (run_a, run_b):
        if not RUN_ID_PATTERN.fullmatch(run_id):
            raise ValueError(f"run id {run_id!r} is not valid; list runs with `issuerisk runs`")
    a = run_rows(tables, GOLD_CLUSTERS, run_a, ["repository", "number", "cluster"])
    b = run_rows(tables, GOLD_CLUSTERS, run_b, ["repository", "number", "cluster"])
    for run_id, frame in ((run_a, a), (run_b, b)):
        if frame.empty:
            raise ValueError(f"run {run_id!r} has no rows in gold_clusters; list runs with `issuerisk runs`")
    both = a.merge(b, on=["repository", "number"], suffixes=("_a", "_b"))
    ari = float(adjusted_rand_score(both["cluster_a"], both["cluster_b"])) if len(both) else None
    moved = changes(_members(a), _members(b))
    topics = {
        run_id: run_rows(tables, GOLD_TOPICS, run_id, ["cluster", "pattern_id", "name", "keywords"])
        for run_id in (run_a, run_b)
    }
    risk = {run_id: run_rows(tables, GOLD_RISK, run_id, ["scope", "cluster", "grade"]) for run_id in (run_a, run_b)}
    patterns = []
    for _, row in topics[run_b].dropna(subset=["pattern_id"]).iterrows():
        earlier = topics[run_a][topics[run_a]["pattern_id"] == row["pattern_id"]]
        if earlier.empty:
            continue
        old = earlier.iloc[0]
        grade = {
            run_id: _grade(risk[run_id], cluster)
            for run_id, cluster in ((run_a, int(old["cluster"])), (run_b, int(row["cluster"])))
        }
        added = [k for k in list(row["keywords"])[:5] if k not in list(old["keywords"])[:10]]
        dropped = [k for k in list(old["keywords"])[:5] if k not in list(row["keywords"])[:10]]
        patterns.append(
            [
                row["pattern_id"],
                int(old["cluster"]),
                int(row["cluster"]),
                row["name"],
                grade[run_a] or "-",
                grade[run_b] or "-",
                ", ".join(f"+{k}" for k in added)
                + (" " if added and dropped else "")
                + ", ".join(f"-{k}" for k in dropped),
            ]
        )
    table(
        f"diff {run_a} -> {run_b}: ARI {ari if ari is None else round(ari, 3)} on {len(both):,} issues in both",
        ["what", "clusters"],
        [
            ("new in B", ", ".join(map(str, moved.new)) or "-"),
            ("gone from A", ", ".join(map(str, moved.gone)) or "-"),
            ("split (A -> B)", "; ".join(f"{c} -> {v}" for c, v in moved.split.items()) or "-"),
            ("merged (A -> B)", "; ".join(f"{v} -> {c}" for c, v in moved.merged.items()) or "-"),
        ],
    )
    if patterns:
        table(
            "patterns in both runs",
            ["pattern", "cluster A", "cluster B", "name", "grade A", "grade B", "keywords"],
            patterns,
        )
    return {
        "ari": ari,
        "issues_in_both": len(both),
        "new": moved.new,
        "gone": moved.gone,
        "split": {str(k): v for k, v in moved.split.items()},
        "merged": {str(k): v for k, v in moved.merged.items()},
        "shared_patterns": len(patterns),
        "grade_changes": sum(1 for p in patterns if p[4] != p[5]),
    }


def _grade(rows, cluster: int) -> str | None:
    match = rows[(rows["scope"] == "all") & (rows["cluster"] == cluster)]
    return None if match.empty else match.iloc[0]["grade"]


DIFF = Stage(
    "diff",
    "Compare two clustering runs: ARI, new/gone/split/merged patterns, grade and keyword changes",
    diff,
    options=(Option(("run_a",), "the earlier run"), Option(("run_b",), "the later run")),
)
