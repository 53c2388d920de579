"""Stage ``report``: one self-contained HTML file per run.

The page holds the risk matrix of every scope as a heat map (cluster counts and
ids per cell), the cluster table, a 2-D map of the issues coloured by cluster,
the framework comparison and the run's manifest. Figures are inline SVG built
here and the only script is inline, so the file opens offline and loads nothing.
The page is built from the gold tables the other stages wrote; run ``topics``,
``risk`` and ``compare`` first (``issuerisk run`` does).

Issue URLs come from files anyone can write, so only absolute http(s) URLs become
links (:func:`http_url`); the page's Content-Security-Policy admits its one script
and its one style sheet by their SHA-256 hashes (:func:`csp_hash`), nothing inline
besides, and loads nothing.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

from issuerisk.constants import FRAMEWORKS
from issuerisk.context import Context
from issuerisk.display import table
from issuerisk.gold import profile_source, resolve_run_id, run_records
from issuerisk.grading.matrix import GRADES, IMPACTS, severity
from issuerisk.html import factsheet_name, http_url, render_page
from issuerisk.schemas.gold import (
    GOLD_CATEGORY_COMPARISON,
    GOLD_CLUSTERS,
    GOLD_EXPLANATIONS,
    GOLD_FRAMEWORK_COMPARISON,
    GOLD_PROFILE,
    GOLD_RISK,
    GOLD_TOPICS,
    GOLD_TRENDS,
    GOLD_VERSION_RISK,
)
from issuerisk.schemas.ledger import RUNS
from issuerisk.schemas.silver import SILVER_ISSUES
from issuerisk.stage import RUN_ID, Option, Stage
from issuerisk.text.versions import version_key

GRADE_COLOURS = {
    "L1": "#2e7d32",
    "L2": "#66bb6a",
    "M1": "#fbc02d",
    "M2": "#f57c00",
    "H1": "#e53935",
    "H2": "#b71c1c",
    "H3": "#4a0000",
}
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#393b79",
    "#ad494a",
    "#637939",
    "#7b4173",
    "#3182bd",
    "#e6550d",
    "#31a354",
    "#756bb1",
    "#636363",
    "#843c39",
    "#8ca252",
)
MAX_POINTS = 6000
TOP_RISKS = 5


class ReportInputError(RuntimeError):
    """The run has nothing to report yet."""


def heatmap_svg(rows: Sequence[Mapping[str, Any]], max_ids: int = 10) -> str:
    """The 4 x 3 risk matrix of one scope: each cell coloured by grade, with its cluster count and ids."""
    cell_w, cell_h, left, top = 150, 64, 46, 26
    cells: dict[tuple[str, str], list[int]] = {}
    for r in rows:
        if r["impact"] is not None:
            cells.setdefault((r["likelihood"], r["impact"]), []).append(int(r["cluster"]))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="heatmap" width="{left + 3 * cell_w + 4}" '
        f'height="{top + 4 * cell_h + 4}" role="img">'
    ]
    for j, impact in enumerate(IMPACTS):
        parts.append(
            f'<text x="{left + j * cell_w + cell_w / 2}" y="18" text-anchor="middle" class="axis">{impact}</text>'
        )
    for i, likelihood in enumerate(reversed(list(GRADES))):
        y = top + i * cell_h
        parts.append(f'<text x="20" y="{y + cell_h / 2 + 5}" text-anchor="middle" class="axis">{likelihood}</text>')
        for j, impact in enumerate(IMPACTS):
            cell_grade = GRADES[likelihood][j]
            ids = sorted(cells.get((likelihood, impact), []))
            shown = ", ".join(str(c) for c in ids[:max_ids]) + (f" +{len(ids) - max_ids}" if len(ids) > max_ids else "")
            x = left + j * cell_w
            parts.append(
                f'<g class="cell" data-grade="{cell_grade}" data-count="{len(ids)}">'
                f'<rect x="{x}" y="{y}" width="{cell_w - 2}" height="{cell_h - 2}" fill="{GRADE_COLOURS[cell_grade]}" '
                f'opacity="{1.0 if ids else 0.35}"/>'
                f'<text x="{x + 8}" y="{y + 20}" class="grade">{cell_grade}: {len(ids)}</text>'
                f'<text x="{x + 8}" y="{y + 42}" class="ids">{escape(shown)}</text></g>'
            )
    parts.append("</svg>")
    return "".join(parts)


def scatter_svg(points: Sequence[tuple[float, float, int]], seed: int, width: int = 720, height: int = 480) -> str:
    """Issues on their 2-D map coordinates, coloured by cluster (noise grey); at most :data:`MAX_POINTS`, a seeded
    sample."""
    if len(points) > MAX_POINTS:
        points = random.Random(seed).sample(list(points), MAX_POINTS)
    if not points:
        return '<p class="empty">No issue has map coordinates.</p>'
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    sx = (width - 20) / ((x1 - x0) or 1.0)
    sy = (height - 20) / ((y1 - y0) or 1.0)
    circles = []
    for x, y, cluster in sorted(points, key=lambda p: p[2] != -1):
        colour = "#c8c8c8" if cluster == -1 else PALETTE[cluster % len(PALETTE)]
        circles.append(
            f'<circle cx="{10 + (x - x0) * sx:.1f}" cy="{height - 10 - (y - y0) * sy:.1f}" r="2.2" fill="{colour}" '
            f'data-c="{cluster}"/>'
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="scatter" width="{width}" height="{height}" '
        f'role="img">{"".join(circles)}</svg>'
    )


def sparkline_svg(shares: Sequence[float], width: int = 180, height: int = 40) -> str:
    """A pattern's share of each quarter's issues as a small line (oldest left), its highest share marked."""
    if not shares:
        return ""
    top = max(shares) or 1.0
    step = (width - 8) / max(len(shares) - 1, 1)
    points = " ".join(f"{4 + i * step:.1f},{height - 4 - (height - 8) * v / top:.1f}" for i, v in enumerate(shares))
    peak = max(range(len(shares)), key=lambda i: shares[i])
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="spark" width="{width}" height="{height}" role="img">'
        f'<polyline points="{points}" fill="none" stroke="#3465a4" stroke-width="1.5"/>'
        f'<circle cx="{4 + peak * step:.1f}" cy="{height - 4 - (height - 8) * shares[peak] / top:.1f}" r="2.5" '
        'fill="#cc0000"/></svg>'
    )


def trend_view(
    trends: Sequence[Mapping[str, Any]], graded: Sequence[Mapping[str, Any]], names: Mapping[int, str]
) -> list[dict[str, Any]]:
    """One small multiple per graded pattern (all frameworks): its quarterly share as a sparkline and its trend."""
    series: dict[int, list[Mapping[str, Any]]] = {}
    for row in sorted((t for t in trends if t["framework"] == "all"), key=lambda t: t["period"]):
        series.setdefault(row["cluster"], []).append(row)
    out = []
    for r in graded:
        rows = series.get(r["cluster"])
        if not rows:
            continue
        last = rows[-1]
        out.append(
            {
                "cluster": r["cluster"],
                "name": names.get(r["cluster"]) or r.get("label") or "",
                "grade": r["grade"],
                "status": last["status"],
                "tau": last["tau"],
                "p_value": last["p_value"],
                "recent_share": last["recent_share"],
                "first": rows[0]["period"],
                "last": last["period"],
                "n": sum(x["n"] for x in rows),
                "svg": sparkline_svg([x["share"] or 0.0 for x in rows]),
            }
        )
    return out


def top_risks(
    risk_rows: Sequence[Mapping[str, Any]], names: Mapping[int, str] | None = None, k: int = TOP_RISKS
) -> list[dict[str, Any]]:
    """The ``k`` most severe graded clusters of scope ``all`` (then the largest), with their confidence and name."""
    rated = [r for r in risk_rows if r["scope"] == "all" and r["grade"] is not None]
    rated.sort(key=lambda r: (-severity(r["grade"]), -r["n"], r["cluster"]))
    keys = (
        "cluster",
        "label",
        "n",
        "p_k",
        "mttr_hours",
        "impact_hours",
        "grade",
        "grade_confidence",
        "action",
        "defect_share",
        "repositories",
    )
    return [
        {**{key: r.get(key) for key in keys}, "name": (names or {}).get(r["cluster"]) or r["label"]} for r in rated[:k]
    ]


def excluded_view(risk_rows: Sequence[Mapping[str, Any]], names: Mapping[int, str]) -> list[dict[str, Any]]:
    """Every cluster not graded over all frameworks, with why, largest first; and per framework how many are not graded
    there."""
    rows = [r for r in risk_rows if r["scope"] == "all" and r.get("excluded_reason")]
    rows.sort(key=lambda r: (-r["n"], r["cluster"]))
    return [
        {
            "cluster": r["cluster"],
            "name": names.get(r["cluster"]) or r["label"] or "",
            "n": r["n"],
            "reason": r["excluded_reason"],
            "defect_share": r.get("defect_share"),
            "repositories": r.get("repositories"),
            "top_repository": r.get("top_repository"),
            "top_repository_share": r.get("top_repository_share"),
        }
        for r in rows
    ]


def comparison_view(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The comparison as one row per cluster with a cell per framework, plus the test's figures."""
    frameworks = sorted(
        {r["framework"] for r in rows}, key=lambda f: FRAMEWORKS.index(f) if f in FRAMEWORKS else len(FRAMEWORKS)
    )
    by_cluster: dict[int, dict[str, Any]] = {}
    for r in rows:
        by_cluster.setdefault(int(r["cluster"]), {})[r["framework"]] = r
    first = rows[0] if rows else {}
    return {
        "frameworks": frameworks,
        "clusters": [
            {"cluster": c, "cells": [cells.get(f) for f in frameworks]} for c, cells in sorted(by_cluster.items())
        ],
        "chi2": first.get("chi2"),
        "p_value": first.get("p_value"),
    }


def version_view(rows: Sequence[Mapping[str, Any]], names: Mapping[int, str]) -> list[dict[str, Any]]:
    """Per framework and version (``gold_version_risk``, versions in numeric order): its clustered issues, the graded
    pattern with the largest share, and the patterns over-represented in it."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["framework"], r["version"]), []).append(r)
    order = sorted(groups, key=lambda k: (FRAMEWORKS.index(k[0]) if k[0] in FRAMEWORKS else 9, version_key(k[1])))

    def cell(r: Mapping[str, Any]) -> dict[str, Any]:
        return {**r, "name": names.get(r["cluster"]) or ""}

    out = []
    for framework, version in order:
        cells = groups[(framework, version)]
        top = max(cells, key=lambda r: (r["n"], -r["cluster"]))
        over = sorted((r for r in cells if r["over_represented"]), key=lambda r: -(r["residual"] or 0))
        out.append(
            {
                "framework": framework,
                "version": version,
                "issues": cells[0]["version_n"],
                "top": cell(top) if top["n"] else None,
                "over": [cell(r) for r in over],
            }
        )
    return out


def category_view(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The per-category comparison as one row per fault category with a cell per framework (largest category first)."""
    view = comparison_view([{**r, "cluster": 0} for r in rows])
    by_category: dict[str, dict[str, Any]] = {}
    for r in rows:
        by_category.setdefault(r["category"], {})[r["framework"]] = r
    order = sorted(by_category, key=lambda c: (-sum(cell["n"] for cell in by_category[c].values()), c))
    return {
        "frameworks": view["frameworks"],
        "chi2": view["chi2"],
        "p_value": view["p_value"],
        "rows": [
            {
                "category": c,
                "clusters": max(cell["clusters"] or 0 for cell in by_category[c].values()),
                "cells": [by_category[c].get(f) for f in view["frameworks"]],
            }
            for c in order
        ],
    }


def profile_view(rows: Sequence[Mapping[str, Any]], source_run: str | None, run_id: str) -> dict[str, Any]:
    """The data profile's warnings (first) and every measured check, and which run measured them."""
    order = {"all": 0, **{f: i + 1 for i, f in enumerate(FRAMEWORKS)}}
    checks = sorted(rows, key=lambda r: (not r["warning"], order.get(r["scope"], 9), r["check"]))
    return {
        "warnings": [r for r in checks if r["warning"]],
        "checks": [r for r in checks if r["direction"] != "info"],
        "info": [r for r in checks if r["direction"] == "info"],
        "source_run": source_run,
        "own": source_run == run_id,
    }


def _level(score: float | None, top: float) -> str:
    """A highlight class for a score relative to the issue's largest: p3..p1 (toward the cluster), n1..n3 (away), or
    none."""
    if score is None or top == 0:
        return "none"
    x = score / top
    return (
        "p3"
        if x > 0.66
        else "p2"
        if x > 0.33
        else "p1"
        if x > 0.1
        else "n3"
        if x < -0.66
        else "n2"
        if x < -0.33
        else "n1"
        if x < -0.1
        else "none"
    )


def explanation_view(
    rows: Sequence[Mapping[str, Any]], names: Mapping[int, str], urls: Mapping[tuple[str, int], str]
) -> list[dict[str, Any]]:
    """Per explained issue (grouped by cluster, in row order): its sentences with a highlight class per method, its top
    words, agreement."""
    issues: dict[tuple[str, int], list[Mapping[str, Any]]] = {}
    for r in rows:
        issues.setdefault((r["repository"], int(r["number"])), []).append(r)
    out = []
    for (repository, number), spans in issues.items():
        sentences = sorted((r for r in spans if r["unit"] == "sentence"), key=lambda r: r["position"])
        words = sorted((r for r in spans if r["unit"] == "token"), key=lambda r: -(r["gradient"] or 0))[:8]
        tops = {
            m: max((abs(r[m]) for r in sentences if r[m] is not None), default=0.0)
            for m in ("perturbation", "gradient")
        }
        first = spans[0]
        out.append(
            {
                "repository": repository,
                "number": number,
                "cluster": first["cluster"],
                "name": names.get(first["cluster"]) or "",
                "href": http_url(urls.get((repository, number))),
                "similarity": first["similarity"],
                "agreement": first["agreement"],
                "seconds": first["seconds"],
                "sentences": [
                    {
                        "text": r["text"],
                        "perturbation": r["perturbation"],
                        "gradient": r["gradient"],
                        "truncated": r["truncated"],
                        "p_class": _level(r["perturbation"], tops["perturbation"]),
                        "g_class": _level(r["gradient"], tops["gradient"]),
                    }
                    for r in sentences
                ],
                "words": [
                    {"text": r["text"], "gradient": r["gradient"], "perturbation": r["perturbation"]} for r in words
                ],
            }
        )
    out.sort(key=lambda e: (e["cluster"], e["repository"], e["number"]))
    return out


def manifest_view(row: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """The run's manifest as (key, value) pairs for display; empty when the run has no row in ``runs``."""
    if row is None:
        return []
    pairs = []
    for key in (
        "run_id",
        "command",
        "status",
        "git_commit",
        "config_hash",
        "started_at",
        "ended_at",
        "args_json",
        "packages",
        "runtime",
        "seeds",
        "tables_read",
        "tables_written",
        "metrics_json",
        "config_json",
    ):
        value = row.get(key)
        if isinstance(value, dict):
            value = json.dumps(dict(sorted(value.items())), default=str)
        if key == "status" and value == "running":
            value = "running (the report is written inside the run; the runs table has its final status)"
        pairs.append((key, "" if value is None else str(value)))
    return pairs


def render(view: Mapping[str, Any]) -> str:
    """The HTML page of a view (see :func:`build_view`)."""
    return render_page("report.html.j2", **view)


def build_view(
    run_id: str,
    risk_rows: list[dict],
    topics: list[dict],
    comparison: list[dict],
    points: list[tuple[float, float, int]],
    manifest: dict | None,
    seed: int,
    min_confidence: float = 0.8,
    categories: list[dict] | None = None,
    profile: list[dict] | None = None,
    profile_run: str | None = None,
    factsheet: str | None = None,
    explanations: list[dict] | None = None,
    issue_urls: Mapping[tuple[str, int], str] | None = None,
    trends: Sequence[Mapping[str, Any]] | None = None,
    versions: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Everything the template shows, from plain rows of the gold tables.

    Args:
        min_confidence: grades whose bootstrap confidence is below this are marked.

    Raises:
        ReportInputError: the run has no ``gold_risk`` rows.
    """
    if not risk_rows:
        raise ReportInputError(
            f"run {run_id!r} has no rows in gold_risk; run `issuerisk risk {run_id}` (and topics, compare) first"
        )
    risk_rows = [{**dict.fromkeys(GOLD_RISK.names), **r} for r in risk_rows]  # rows of older runs lack later columns
    topic_by_cluster = {t["cluster"]: t for t in topics}
    names = {c: t.get("name") for c, t in topic_by_cluster.items() if t.get("name")}
    graded_rows = [r for r in risk_rows if not r.get("excluded_reason")]
    scopes = ["all", *sorted({r["scope"] for r in risk_rows} - {"all"})]
    per_scope = {
        s: sorted(
            (r for r in graded_rows if r["scope"] == s), key=lambda r: (-severity(r["grade"]), -r["n"], r["cluster"])
        )
        for s in scopes
    }
    measure = next((r.get("impact_measure") for r in graded_rows if r.get("impact_measure")), "mean_closed")

    def cluster_row(r: Mapping[str, Any]) -> dict[str, Any]:
        topic = topic_by_cluster.get(r["cluster"]) or {}
        confidence = r.get("grade_confidence")
        return {
            **r,
            "name": topic.get("name") or r.get("label") or "",
            "name_coverage": topic.get("name_coverage"),
            "keywords": topic.get("keywords") or [],
            "category": topic.get("category"),
            "representative": [{"href": http_url(url), "text": str(url)} for url in topic.get("representative") or []],
            "doubtful": confidence is not None and confidence < min_confidence,
            "colour": PALETTE[r["cluster"] % len(PALETTE)],
            "palette_index": r["cluster"] % len(PALETTE),
        }

    top = top_risks(risk_rows, names)
    for t in top:
        t["doubtful"] = t["grade_confidence"] is not None and t["grade_confidence"] < min_confidence
    return {
        "run_id": run_id,
        "derived_from": next((r["derived_from"] for r in risk_rows if r.get("derived_from")), None),
        "impact_measure": measure,
        "min_confidence": min_confidence,
        "scopes": [
            {
                "name": s,
                "heatmap": heatmap_svg(per_scope[s]),
                "n": sum(r["n"] for r in per_scope[s]),
                "unrated": [r["cluster"] for r in per_scope[s] if r["grade"] is None],
                "excluded": sum(1 for r in risk_rows if r["scope"] == s and r.get("excluded_reason")),
            }
            for s in scopes
        ],
        "clusters": [cluster_row(r) for r in per_scope["all"]],
        "excluded": excluded_view(risk_rows, names),
        "top_risks": top,
        "scatter": scatter_svg(points, seed),
        "n_points": len(points),
        "noise_points": sum(1 for p in points if p[2] == -1),
        "comparison": comparison_view(comparison),
        "categories": category_view(categories or []),
        "manifest": manifest_view(manifest),
        "profile": profile_view(profile or [], profile_run, run_id),
        "factsheet": factsheet,
        "explanations": explanation_view(explanations or [], names, issue_urls or {}),
        "trends": trend_view(trends or [], per_scope["all"], names),
        "versions": version_view(versions or [], names),
        "colours": GRADE_COLOURS,
        "palette": PALETTE,
    }


def issue_urls(tables, rows: Sequence[Mapping[str, Any]]) -> dict[tuple[str, int], str]:
    """Links of the issues in ``rows`` (from silver_issues)."""
    wanted = {(r["repository"], int(r["number"])) for r in rows}
    if not wanted:
        return {}
    issues = tables.read(SILVER_ISSUES, columns=["repository", "number", "html_url"]).to_pylist()
    return {(r["repository"], r["number"]): r["html_url"] for r in issues if (r["repository"], r["number"]) in wanted}


def run(ctx: Context, run_id: str | None = None, out: str | None = None) -> dict[str, Any]:
    """Write the HTML report of one clustering run (default: the latest).

    Returns:
        ``{"report": path, "top_risks": [...], ...}``; the top risks are the most severe clusters over all frameworks.

    Raises:
        NoClusteringError: no clustering run.
        ReportInputError: the run has no risk rows yet.
    """
    tables = ctx.lake.arrow
    run_id = resolve_run_id(tables, run_id)
    risk_rows = run_records(tables, GOLD_RISK, run_id)
    manifests = run_records(tables, RUNS, run_id)
    points = [
        (r["x"], r["y"], r["cluster"])
        for r in run_records(tables, GOLD_CLUSTERS, run_id, ["x", "y", "cluster"])
        if r["x"] is not None and r["y"] is not None
    ]
    profile_run = profile_source(tables, run_id)
    explanations = run_records(tables, GOLD_EXPLANATIONS, run_id)
    path = Path(out or Path(ctx.cfg.resolve_path(ctx.cfg.project.reports_dir)) / f"{run_id}.html").resolve()
    view = build_view(
        run_id,
        risk_rows,
        run_records(tables, GOLD_TOPICS, run_id),
        run_records(tables, GOLD_FRAMEWORK_COMPARISON, run_id),
        points,
        manifests[0] if manifests else None,
        ctx.cfg.project.seed,
        ctx.cfg.risk.min_grade_confidence,
        run_records(tables, GOLD_CATEGORY_COMPARISON, run_id),
        run_records(tables, GOLD_PROFILE, profile_run) if profile_run else [],
        profile_run,
        factsheet_name(run_id),
        explanations,
        issue_urls(tables, explanations),
        run_records(tables, GOLD_TRENDS, run_id),
        run_records(tables, GOLD_VERSION_RISK, run_id),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(view), encoding="utf-8")
    table(
        f"Report of run {run_id}: {path}",
        ["cluster", "pattern", "n", "P_k", "impact h", "grade", "confidence", "action"],
        [
            (
                t["cluster"],
                t["name"] or "",
                t["n"],
                t["p_k"],
                t["impact_hours"],
                t["grade"],
                t["grade_confidence"],
                t["action"],
            )
            for t in view["top_risks"]
        ],
    )
    return {
        "run_id": run_id,
        "report": str(path),
        "top_risks": view["top_risks"],
        "clusters": len(view["clusters"]),
        "bytes": path.stat().st_size,
    }


STAGE = Stage(
    "report",
    "Self-contained HTML report of a run",
    run,
    reads=(
        GOLD_RISK.name,
        GOLD_TOPICS.name,
        GOLD_FRAMEWORK_COMPARISON.name,
        GOLD_CATEGORY_COMPARISON.name,
        GOLD_CLUSTERS.name,
        GOLD_PROFILE.name,
        GOLD_EXPLANATIONS.name,
        GOLD_TRENDS.name,
        GOLD_VERSION_RISK.name,
        RUNS.name,
        SILVER_ISSUES.name,
    ),
    options=(RUN_ID, Option(("--out",), "HTML file to write (default: <reports_dir>/<run_id>.html)")),
)
