"""The one registry of stages, in pipeline order; a new stage is one module with a ``STAGE`` and one line here.

Where each stage lives says what it is: Spark jobs in ``issuerisk.jobs`` (the
repository's jobs/), Ray work in ``issuerisk.ray_tasks`` (ray_tasks/), pandas and
BERTopic analysis in ``issuerisk.analysis``, the HTML report in
``issuerisk.report``, the GitHub HTTP crawler in ``issuerisk.github``.
"""

from __future__ import annotations

from issuerisk.analysis import assign, classify, compare, mask, profile, risk, topics, trends, versions, watch
from issuerisk.github import crawl, discover
from issuerisk.jobs import filter as silver_filter
from issuerisk.jobs import ingest, summarize
from issuerisk.ray_tasks import cluster, embed, explain
from issuerisk.report import factsheet, report
from issuerisk.stage import Stage

PIPELINE: tuple[Stage, ...] = (
    ingest.STAGE,
    silver_filter.STAGE,
    summarize.STAGE,
    mask.STAGE,
    profile.PROFILE,
    embed.STAGE,
    profile.DRIFT,
    classify.STAGE,
    cluster.STAGE,
    topics.STAGE,
    risk.STAGE,
    compare.STAGE,
    trends.STAGE,
    versions.STAGE,
    assign.STAGE,
    explain.STAGE,
    report.STAGE,
    factsheet.STAGE,
)
"""The stages ``issuerisk run`` runs, in order."""

REGISTRY: dict[str, Stage] = {stage.name: stage for stage in (*PIPELINE, discover.STAGE, crawl.STAGE, watch.STAGE)}
"""Every stage by name."""
