"""Gold tables of topics, the risk matrix and the cross-framework comparison (every run's rows kept)."""

from __future__ import annotations

from issuerisk.schemas.base import RUN_ID, Column, TableSpec, register

GOLD_TOPICS = register(TableSpec(
    name="gold_topics",
    doc="Per cluster: c-TF-IDF keywords with weights, a short label and the most representative issues.",
    key=("run_id", "cluster"),
    columns=(
        Column("cluster", "int", "Cluster id from gold_clusters.", nullable=False),
        Column("label", "string", "Short label from the top keywords."),
        Column("keywords", "array<string>", "Top keywords by c-TF-IDF."),
        Column("weights", "array<double>", "c-TF-IDF weight of each keyword."),
        Column("representative", "array<string>", "Links (html_url) of the most representative issues."),
        Column("n", "long", "Issues in the cluster."),
        RUN_ID,
    ),
))

GOLD_RISK = register(TableSpec(
    name="gold_risk",
    doc="Risk matrix per cluster and scope (all frameworks, or one): likelihood band, impact tertile, grade, action.",
    key=("run_id", "scope", "cluster"),
    columns=(
        RUN_ID,
        Column("scope", "string", "all, or a framework name.", nullable=False),
        Column("cluster", "int", "Cluster id.", nullable=False),
        Column("label", "string", "Topic label."),
        Column("n", "long", "Issues of the cluster in scope.", nullable=False),
        Column("p_k", "double", "n_k / N over clustered, in-scope, non-excluded issues.", nullable=False),
        Column("likelihood", "string", "P1..P4.", nullable=False),
        Column("mttr_hours", "double", "Mean time to resolve of closed issues; null when none closed."),
        Column("median_ttr_hours", "double", "Median time to resolve of closed issues."),
        Column("open_share", "double", "Share of the cluster's issues still open."),
        Column("impact", "string", "I1..I3 by tertiles of the clusters' MTTRs; null without closed issues."),
        Column("grade", "string", "L1, L2, M1, M2, H1, H2, H3; null without impact."),
        Column("action", "string", "accept, monitor, act, block, full review."),
    ),
))

GOLD_FRAMEWORK_COMPARISON = register(TableSpec(
    name="gold_framework_comparison",
    doc="One joint clustering compared across frameworks: shares, chi-square residuals and grades side by side.",
    key=("run_id", "cluster", "framework"),
    columns=(
        RUN_ID,
        Column("cluster", "int", "Cluster id.", nullable=False),
        Column("framework", "string", "Framework.", nullable=False),
        Column("n", "long", "Issues of this framework in the cluster.", nullable=False),
        Column("share", "double", "n over the framework's clustered issues."),
        Column("expected", "double", "Expected count under independence."),
        Column("std_residual", "double", "Adjusted standardized residual; |r| > 1.96 is over/under-represented."),
        Column("grade", "string", "The cluster's grade in this framework's own risk matrix."),
        Column("chi2", "double", "Chi-square statistic of the whole table (same on every row)."),
        Column("p_value", "double", "p-value of the chi-square test (same on every row)."),
    ),
))
