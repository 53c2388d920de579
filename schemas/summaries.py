"""The summary cache: one row per issue and summarizer input, reused while the input is unchanged."""

from __future__ import annotations

from schemas.base import NUMBER, REPOSITORY, RUN_ID, Column, TableSpec, register

SILVER_SUMMARIES = register(TableSpec(
    name="silver_summaries",
    doc="Issue summaries keyed by a hash of summarizer kind, model, prompt version, title and body.",
    key=("cache_key",),
    columns=(
        Column("cache_key", "string", "SHA-256 of summarizer kind, model, prompt version, title and body.", nullable=False),
        REPOSITORY,
        NUMBER,
        Column("summarizer", "string", "extractive or llm.", nullable=False),
        Column("model", "string", "LLM model name, or the extractive algorithm's version.", nullable=False),
        Column("prompt_version", "string", "Prompt version (llm) or rules version (extractive).", nullable=False),
        Column("summary", "string", "The summary text.", nullable=False),
        Column("input_tokens", "long", "Prompt tokens the endpoint reported (0 for extractive)."),
        Column("output_tokens", "long", "Completion tokens the endpoint reported (0 for extractive)."),
        RUN_ID,
        Column("created_at", "timestamp", "When the summary was made.", nullable=False),
    ),
))
