"""``issuerisk run``: every stage from ingest to report in one run (one row in ``runs``, one run id).

Stages share one SparkSession and one Ray start-up through the context; each
stage's counts and wall time land in the run's metrics, and the gold rows of
clusters, topics, risk and comparison all carry this run's id, so the report,
a replay and ad hoc SQL find them together.
"""

from __future__ import annotations

import importlib
import time
from typing import Any

from issuerisk.context import Context
from issuerisk.display import console, table

STAGES = (
    ("ingest", "jobs.ingest"),
    ("filter", "jobs.filter"),
    ("summarize", "jobs.summarize"),
    ("embed", "ray_tasks.embed"),
    ("cluster", "ray_tasks.cluster"),
    ("topics", "jobs.topics"),
    ("risk", "jobs.risk"),
    ("compare", "jobs.compare"),
    ("report", "jobs.report"),
)
ANALYSIS = ("topics", "risk", "compare", "report")


def _overrides(ctx: Context, sample: int | None, summarizer: str | None, embed_backend: str | None, cluster_backend: str | None) -> None:
    cfg = ctx.cfg
    if sample is not None:
        cfg = cfg.updated("project", sample_size=sample)
    if summarizer:
        cfg = cfg.updated("summarize", summarizer=summarizer)
    if embed_backend:
        cfg = cfg.updated("embed", backend=embed_backend)
    if cluster_backend:
        cfg = cfg.updated("cluster", backend=cluster_backend)
    ctx.with_config(cfg)


def run(ctx: Context, paths: list[str], framework: str | None = None, sample: int | None = None,
        summarizer: str | None = None, embed_backend: str | None = None, cluster_backend: str | None = None) -> dict[str, Any]:
    """Run ingest -> filter -> summarize -> embed -> cluster -> topics -> risk -> compare -> report."""
    _overrides(ctx, sample, summarizer, embed_backend, cluster_backend)
    results: dict[str, Any] = {}
    timings = []
    for name, module in STAGES:
        console.rule(f"[bold]{name}")
        stage = importlib.import_module(module)
        options: dict[str, Any] = {}
        if name == "ingest":
            options = {"paths": paths, "framework": framework}
        elif name in ANALYSIS:
            options = {"run_id": ctx.run.run_id}
        t0 = time.perf_counter()
        result = stage.run(ctx, **options) or {}
        seconds = time.perf_counter() - t0
        counts = {k: v for k, v in result.items() if isinstance(v, (int, float, str, dict, list))}
        ctx.run.stage(name, **{**counts, "stage_seconds": round(seconds, 2)})
        ctx.run.save("running")
        results[name] = result
        timings.append([name, f"{seconds:,.1f}"])
        if name == "filter":
            _framework_counts(ctx)
    table("stage times (s)", ["stage", "seconds"], timings)
    _closing(ctx, results.get("report", {}))
    return {"stages": [n for n, _ in STAGES]}


def _framework_counts(ctx: Context) -> None:
    db = ctx.cfg.project.database
    query = f"SELECT framework, framework_source, count(*) AS issues FROM {db}.silver_issues GROUP BY 1, 2 ORDER BY 3 DESC"
    rows = [list(r) for r in ctx.spark.sql(query).collect()]
    table("silver issues per framework (Spark SQL)", ["framework", "source", "issues"], rows)


def _closing(ctx: Context, report: dict[str, Any]) -> None:
    db = ctx.cfg.project.database
    console.print(f"\nDelta tables: {ctx.cfg.project.warehouse}/{db}.db  (catalog database '{db}')")
    if report.get("report"):
        console.print(f"Report: {report['report']}")
    if report.get("top_risks"):
        table("top risk clusters", list(report["top_risks"][0].keys()), [list(r.values()) for r in report["top_risks"]])
    console.print(
        "Try:  .venv/bin/issuerisk sql \"SELECT scope, cluster, label, n, likelihood, impact, grade "
        f"FROM {db}.gold_risk WHERE run_id = '{ctx.run.run_id}' "
        "ORDER BY array_position(array('L1','L2','M1','M2','H1','H2','H3'), grade) DESC, n DESC LIMIT 10\""
    )
