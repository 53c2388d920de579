"""Command ``run``: every stage of :data:`issuerisk.stages.PIPELINE` in one run (one row in ``runs``, one run id).

Stages share one SparkSession and one Ray start-up through the context; each
stage gets the run's arguments it takes (``paths`` and ``framework`` for ingest,
this run's id for the analysis stages), and its counts and wall time land in the
run's metrics. The gold rows of clusters, topics, risk and comparison all carry
this run's id, so the report, a replay and ad hoc SQL find them together.

Fixed costs are paid once and overlapped: Spark (in a thread) and Ray start
together; the catalog registration of every table runs in the background
(:meth:`issuerisk.lakehouse.Lakehouse.start_spark`); and each stage's ``warm``
(the embedding actors loading their model, BERTopic's imports) starts before the
Spark stages, so it is ready when its stage comes.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from issuerisk.constants import grade_order_sql
from issuerisk.context import Context
from issuerisk.display import console, table
from issuerisk.issue_files import find_files
from issuerisk.stage import FRAMEWORK, PATHS, Option, Stage, execute
from issuerisk.stages import PIPELINE


def run(ctx: Context, paths: list[str], framework: str | None = None) -> dict[str, Any]:
    """Run ingest -> filter -> summarize -> embed -> cluster -> topics -> risk -> compare -> report."""
    args = {"paths": paths, "framework": framework, "run_id": ctx.run.run_id}
    find_files(paths)  # a missing path is named before any engine starts
    started = _start_engines(ctx)
    results: dict[str, Any] = {}
    try:
        for stage in PIPELINE:
            if stage.warm is not None:
                stage.warm(ctx)
        for stage in PIPELINE:
            console.rule(f"[bold]{stage.name}")
            results[stage.name] = execute(stage, ctx, args)
            ctx.run.save("running")
    finally:
        for ready in ctx.warmed.values():  # a stage pops what it uses; the rest (a failed run's) is released here
            ready.close()
        ctx.warmed.clear()
        ctx.lake.registered(check=False)  # no catalog write is cut off by the exit, whatever happened
    ctx.lake.registered()
    table(
        "stage times (s)",
        ["stage", "seconds", "cores busy"],
        [["Spark + Ray start (together)", f"{started:,.1f}", ""]]
        + [[name, f"{r['stage_seconds']:,.1f}", _busy(r.get("cpu_cores_busy"))] for name, r in results.items()],
    )
    _closing(ctx, results["report"])
    return {"stages": list(results), "engines_start_seconds": round(started, 2)}


def _busy(cores: float | None) -> str:
    """Cores busy on average during a stage, out of the machine's."""
    return "" if cores is None else f"{cores:.2f} of {os.cpu_count()}"


def _start_engines(ctx: Context) -> float:
    """Start Spark and Ray at the same time, and return the seconds it took.

    Each takes seconds (Spark 9-15 s, Ray about 5 s on 2 cores), much of it spent waiting on
    child processes (the JVM, GCS and raylet), so a run starts Spark in a thread while this
    thread starts Ray (which must be the main thread: it installs signal handlers).
    """
    t0 = time.perf_counter()
    with ThreadPoolExecutor(
        1, thread_name_prefix="issuerisk-spark-start"
    ) as pool:  # waits for Spark also when Ray fails
        spark = pool.submit(ctx.lake.start_spark, register_in_background=True)  # tables registered meanwhile
        ctx.ray()
    spark.result()  # Spark's own error, if it failed
    return time.perf_counter() - t0


def _closing(ctx: Context, report: dict[str, Any]) -> None:
    db = ctx.cfg.project.database
    console.print(f"\nDelta tables: {ctx.cfg.project.warehouse}/{db}.db  (catalog database '{db}')")
    if report.get("report"):
        console.print(f"Report: {report['report']}")
    if report.get(
        "top_risks"
    ):  # what a person reads first, narrow enough for 80 columns; the rest is in the report and SQL
        table(
            "top risks (all frameworks)",
            ["pattern", "grade", "conf.", "n", "repos", "defect"],
            [
                [
                    (r["name"] or "")[:34],
                    r["grade"],
                    _percent(r["grade_confidence"]),
                    r["n"],
                    r["repositories"],
                    _percent(r["defect_share"]),
                ]
                for r in report["top_risks"]
            ],
        )
    console.print(
        'Try:  .venv/bin/issuerisk sql "SELECT scope, cluster, label, n, likelihood, impact, grade '
        f"FROM {db}.gold_risk WHERE run_id = '{ctx.run.run_id}' "
        f'ORDER BY {grade_order_sql()} DESC, n DESC LIMIT 10"'
    )


def _percent(share: float | None) -> str:
    return "" if share is None else f"{100 * share:.0f}%"


RUN = Stage(
    "run",
    "Run every stage from ingest to report",
    run,
    options=(
        PATHS,
        FRAMEWORK,
        Option(
            ("--sample",),
            "keep this many silver issues (seeded sample) for a quick run",
            "project.sample_size",
            {"type": int},
        ),
        Option(("--summarizer",), "override summarize.summarizer", "summarize.summarizer"),
        Option(("--cluster-backend",), "override cluster.backend", "cluster.backend"),
    ),
)
