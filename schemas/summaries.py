"""The summary cache and its failures: one row per issue and summarizer input, reused while the input is unchanged."""

from __future__ import annotations

from issuerisk.schemas.base import NUMBER, REPOSITORY, RUN_ID, Column, TableSpec, register

CACHE_KEY = Column(
    "cache_key", "string",
    "SHA-256 of summarizer kind, model, prompt version, the issue key, title and body.",
    nullable=False,
)
SUMMARIZER = Column("summarizer", "string", "extractive or llm.", nullable=False)
MODEL = Column("model", "string", "LLM model name, or the extractive rules' version.", nullable=False)
PROMPT_VERSION = Column("prompt_version", "string", "Prompt version and prompt hash (llm) or token budget (extractive).", nullable=False)
IDENTITY = (CACHE_KEY, REPOSITORY, NUMBER, SUMMARIZER, MODEL, PROMPT_VERSION)

SILVER_SUMMARIES = register(TableSpec(
    name="silver_summaries",
    doc="Issue summaries keyed by a hash of summarizer kind, model, prompt version, issue key, title and body.",
    key=("cache_key",),
    columns=(
        *IDENTITY,
        Column("summary", "string", "The summary text; starts with the issue title.", nullable=False),
        Column("input_tokens", "long", "Prompt tokens the endpoint reported (0 for extractive)."),
        Column("output_tokens", "long", "Completion tokens the endpoint reported (0 for extractive)."),
        RUN_ID,
        Column("created_at", "timestamp", "When the summary was made.", nullable=False),
    ),
))

SILVER_SUMMARY_FAILURES = register(TableSpec(
    name="silver_summary_failures",
    doc="Issues a summarizer could not summarize, with the reason; a rerun tries them again.",
    key=("cache_key",),
    columns=(
        *IDENTITY,
        Column("reason", "string", "rate_limited, server_error, timeout, connection, bad_request, malformed, empty or refused.", nullable=False),
        Column("detail", "string", "The status, message or answer at fault (never a key)."),
        Column("calls", "long", "Requests made for this issue in the failing run, retries included."),
        RUN_ID,
        Column("failed_at", "timestamp", "When the last attempt failed.", nullable=False),
    ),
))
