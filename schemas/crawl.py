"""Tables of the GitHub crawler: discovered repositories and per-repository checkpoints."""

from __future__ import annotations

from schemas.base import REPOSITORY, RUN_ID, Column, TableSpec, register

BRONZE_REPOS = register(TableSpec(
    name="bronze_repos",
    doc="Repositories found by GitHub search per framework, with why any was excluded.",
    key=("repository",),
    columns=(
        REPOSITORY,
        Column("frameworks", "array<string>", "Frameworks whose search found it.", nullable=False),
        Column("stars", "long", "stargazers_count at discovery."),
        Column("description", "string", "Repository description."),
        Column("language", "string", "Primary language GitHub reports."),
        Column("created_at", "timestamp", "Repository creation (UTC)."),
        Column("pushed_at", "timestamp", "Last push (UTC)."),
        Column("excluded_reason", "string", "Why it is not crawled (tutorial, handbook, ui, ...); null when selected."),
        RUN_ID,
    ),
))

CRAWL_CHECKPOINTS = register(TableSpec(
    name="crawl_checkpoints",
    doc="Per-repository crawl progress, so a killed crawl resumes without losing or duplicating issues.",
    key=("repository",),
    columns=(
        REPOSITORY,
        Column("status", "string", "in_progress, done, gone (404), blocked (451), issues_disabled.", nullable=False),
        Column("next_url", "string", "Next page to fetch when in progress."),
        Column("since", "string", "updated_at high-water mark for the next incremental crawl."),
        Column("etag", "string", "ETag of the first page for conditional requests."),
        Column("issues_fetched", "long", "Issue objects written by the crawl so far."),
        Column("raw_file", "string", "JSON Lines file of this repository's raw issues."),
        RUN_ID,
        Column("updated_at", "timestamp", "When the checkpoint was written.", nullable=False),
    ),
))
