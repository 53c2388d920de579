"""Gold tables written by the Ray stages: embeddings and clusters (every run's rows are kept)."""

from __future__ import annotations

from issuerisk.schemas.base import NUMBER, REPOSITORY, RUN_ID, Column, TableSpec, register

GOLD_EMBEDDINGS = register(TableSpec(
    name="gold_embeddings",
    doc="Normalized float32 embedding per issue summary and model; re-embedded only when the summary changes.",
    key=("repository", "number", "model"),
    columns=(
        REPOSITORY,
        NUMBER,
        Column("model", "string", "Embedding model (with backend, e.g. static:<model>).", nullable=False),
        Column("summary_key", "string", "cache_key of the summary embedded; a new key means re-embed.", nullable=False),
        Column("dim", "int", "Vector dimension.", nullable=False),
        Column("vector", "array<float>", "L2-normalized embedding.", nullable=False),
        RUN_ID,
    ),
))

GOLD_CLUSTERS = register(TableSpec(
    name="gold_clusters",
    doc="Cluster of every issue per run (-1 is noise), with membership, outlier score and 2-D map coordinates.",
    key=("run_id", "repository", "number"),
    columns=(
        REPOSITORY,
        NUMBER,
        Column("cluster", "int", "HDBSCAN cluster id; -1 is noise.", nullable=False),
        Column("probability", "double", "HDBSCAN membership strength in [0, 1]."),
        Column("outlier_score", "double", "GLOSH outlier score."),
        Column("x", "double", "2-D UMAP coordinate for plots."),
        Column("y", "double", "2-D UMAP coordinate for plots."),
        Column("model", "string", "Embedding model the clustering used."),
        RUN_ID,
        Column("stability", "double", "Bootstrap Jaccard stability of the issue's cluster (null for noise)."),
        Column("agreement", "double", "Share of the consensus's member clusterings that put the issue with its cluster's core (null for a single run)."),
    ),
))

EMBED_FAILURES = register(TableSpec(
    name="embed_failures",
    doc="Summaries the embed stage could not embed, with why; they are retried on the next run.",
    key=("repository", "number", "model", "summary_key"),
    columns=(
        REPOSITORY,
        NUMBER,
        Column("model", "string", "Embedding model that was asked.", nullable=False),
        Column("summary_key", "string", "cache_key of the summary that failed.", nullable=False),
        Column("reason", "string", "Why it failed, and what to do.", nullable=False),
        RUN_ID,
    ),
))
