"""Stage ``summarize``: silver issues -> ``silver_summaries``, through a cache that survives crashes.

Every issue gets a cache key, the SHA-256 of the summarizer's identity (kind,
model, prompt version), the issue key, title and body, computed in Spark; only
issues whose key is not in ``silver_summaries`` are summarized, so a rerun asks
the model only for new or edited issues. An LLM's answers are MERGEd in batches
of ``summarize.batch_size`` while the next requests are in flight, so a crash
loses at most one batch; the extractive summarizer's are MERGEd once. Failures
(with reasons) go to ``silver_summary_failures`` and are tried again by the next
run; they are never stored as summaries.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from issuerisk.context import Context
from issuerisk.display import progress, table
from issuerisk.lakehouse.spark_tables import SparkTables
from issuerisk.sampling import sampled_keys
from issuerisk.schemas.silver import SILVER_ISSUES, SILVER_SUMMARIES, SILVER_SUMMARY_FAILURES
from issuerisk.stage import Option, Stage
from issuerisk.summarizers import Outcome, SummaryIdentity, Tally, answer_all, make_summarizer

KEY_SEPARATOR = "\x1f"


def cache_key_column(identity: SummaryIdentity) -> Column:
    """Spark column: SHA-256 hex of identity, repository, number, title and body joined by U+001F."""
    return F.sha2(
        F.concat_ws(
            KEY_SEPARATOR,
            *(F.lit(part) for part in identity),
            F.col("repository"),
            F.col("number").cast("string"),
            F.coalesce(F.col("title"), F.lit("")),
            F.coalesce(F.col("body"), F.lit("")),
        ),
        256,
    )


def _rows(batch: list[tuple[Any, Outcome]], identity: SummaryIdentity, run_id: str) -> tuple[list[dict], list[dict]]:
    now = datetime.now(timezone.utc)
    done, failed = [], []
    for issue, outcome in batch:
        common = {
            "cache_key": issue.cache_key,
            "repository": issue.repository,
            "number": issue.number,
            **identity._asdict(),
            "run_id": run_id,
        }
        if outcome.summary is not None:
            done.append(
                {
                    **common,
                    "summary": outcome.summary,
                    "input_tokens": outcome.input_tokens,
                    "output_tokens": outcome.output_tokens,
                    "created_at": now,
                }
            )
        else:
            failed.append(
                {**common, "reason": outcome.reason, "detail": outcome.detail, "calls": outcome.calls, "failed_at": now}
            )
    return done, failed


@dataclass(frozen=True)
class Plan:
    """What a summarize run has to do: the issues without a cached summary, in (repository, number) order."""

    todo: list[Any]
    issues: int
    missing: int


def plan(tables: SparkTables, issues: DataFrame, identity: SummaryIdentity, limit: int | None) -> Plan:
    """Cache keys for ``issues`` (Spark), and the ones ``silver_summaries`` lacks (at most ``limit``)."""
    keyed = issues.withColumn("cache_key", cache_key_column(identity)).cache()
    try:
        misses = keyed.join(tables.read(SILVER_SUMMARIES).select("cache_key"), "cache_key", "left_anti")
        total, missing = keyed.count(), misses.count()
        ordered = misses.orderBy("repository", "number")
        todo = (ordered.limit(limit) if limit is not None else ordered).collect()
    finally:
        keyed.unpersist()
    return Plan(todo, total, missing)


def run(ctx: Context, limit: int | None = None) -> dict[str, Any]:
    """Summarize the in-scope silver issues that have no summary for the configured summarizer yet.

    Args:
        ctx: the command's context.
        limit: summarize at most this many uncached issues (in repository, number order).

    Returns:
        Counts for the run row: issues, cached, summarized, failed (by reason), calls,
        retries and tokens.

    Raises:
        ValueError: ``limit`` below 1.
        SummarizerError: the LLM endpoint rejects the key, model or URL (what was
            answered before is kept).
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}; leave it out to summarize every issue")
    cfg, tables = ctx.cfg, ctx.lake.spark
    spark = tables.spark
    engine = make_summarizer(cfg.summarize)
    identity = engine.identity
    issues = tables.read(SILVER_ISSUES).select("repository", "number", "title", "body")
    chosen = sampled_keys(ctx.lake.arrow, cfg)
    if chosen is not None:
        issues = issues.join(
            F.broadcast(spark.createDataFrame(sorted(chosen), "repository string, number long")),
            ["repository", "number"],
        )
    work = plan(tables, issues, identity, limit)

    def flush(batch: list[tuple[Any, Outcome]]) -> None:
        done, failed = _rows(batch, identity, ctx.run.run_id)
        if done:
            tables.merge(SILVER_SUMMARIES, spark.createDataFrame(done, SILVER_SUMMARIES.spark))
        if failed:
            tables.merge(SILVER_SUMMARY_FAILURES, spark.createDataFrame(failed, SILVER_SUMMARY_FAILURES.spark))

    with progress(len(work.todo), f"summarize ({identity.summarizer})", "issue", ctx.progress) as bar:
        batch_size = cfg.summarize.batch_size if engine.remote else max(len(work.todo), 1)
        tally = asyncio.run(
            answer_all(engine, engine.summarize, work.todo, flush, batch_size, on_done=lambda: bar.update(1))
        )
    return _report(identity, work, tally)


def _report(identity: SummaryIdentity, work: Plan, tally: Tally) -> dict[str, Any]:
    counts = {
        "summarizer": identity.summarizer,
        "model": identity.model,
        "prompt_version": identity.prompt_version,
        "issues": work.issues,
        "cached": work.issues - work.missing,
        "summarized": tally.answered,
        "failed": sum(tally.failed.values()),
        "failed_by_reason": dict(sorted(tally.failed.items())),
        "fallback_by_reason": dict(sorted(tally.fallback.items())),
        "not_attempted": work.missing - len(work.todo),
        "calls": tally.calls,
        "retries": tally.retries,
        "input_tokens": tally.input_tokens,
        "output_tokens": tally.output_tokens,
    }
    rows = [("summarized", tally.answered), ("cached", counts["cached"])]
    rows += [(f"failed: {reason}", n) for reason, n in counts["failed_by_reason"].items()]
    rows += [
        (f"extractive instead of the answer: {reason.removeprefix('fallback_')}", n)
        for reason, n in counts["fallback_by_reason"].items()
    ]
    if counts["not_attempted"]:
        rows.append(("left for later (--limit)", counts["not_attempted"]))
    rows += [
        ("requests", tally.calls),
        ("retries", tally.retries),
        ("input tokens", tally.input_tokens),
        ("output tokens", tally.output_tokens),
    ]
    table(f"summarize: {identity.summarizer} / {identity.model} / {identity.prompt_version}", ("", "issues"), rows)
    return counts


STAGE = Stage(
    "summarize",
    "Summarize silver issues into silver_summaries (cached)",
    run,
    reads=(SILVER_ISSUES.name, SILVER_SUMMARIES.name),
    writes=(SILVER_SUMMARIES.name, SILVER_SUMMARY_FAILURES.name),
    sections=("summarize",),
    options=(
        Option(("--summarizer",), "override summarize.summarizer", "summarize.summarizer"),
        Option(("--limit",), "summarize at most this many issues", argparse={"type": int}),
    ),
)
