"""Tables of the GitHub crawler: discovered repositories and per-repository checkpoints."""

from __future__ import annotations

from issuerisk.schemas.base import REPOSITORY, RUN_ID, Column, TableSpec, register

BRONZE_REPOS = register(TableSpec(
    name="bronze_repos",
    doc="Repositories found by GitHub search per framework, with why any was excluded.",
    key=("repository",),
    columns=(
        REPOSITORY,
        Column("frameworks", "array<string>", "Frameworks whose search found it (union over discovery runs).", nullable=False),
        Column("stars", "long", "stargazers_count at discovery."),
        Column("description", "string", "Repository description."),
        Column("language", "string", "Primary language GitHub reports."),
        Column("topics", "array<string>", "Repository topics."),
        Column("has_issues", "boolean", "Whether the issue tracker is enabled."),
        Column("created_at", "timestamp", "Repository creation (UTC)."),
        Column("pushed_at", "timestamp", "Last push (UTC)."),
        Column("excluded_reason", "string", "Why it is not crawled ('tutorial in name', 'ui in description', 'issues disabled'); null when selected."),
        RUN_ID,
        Column("discovered_at", "timestamp", "When this row was written.", nullable=False),
    ),
))

CRAWL_CHECKPOINTS = register(TableSpec(
    name="crawl_checkpoints",
    doc="Per-repository crawl progress, so a killed crawl resumes without losing or duplicating issues.",
    key=("repository",),
    columns=(
        REPOSITORY,
        Column("status", "string", "in_progress, fetched (awaiting ingest), done, gone (404), issues_disabled (410), blocked (451).", nullable=False),
        Column("next_url", "string", "Next page to fetch while in progress (its query holds the pass's since)."),
        Column("since", "string", "While in progress: the since of this pass; otherwise the since of the next incremental pass."),
        Column("pass_started", "string", "Server time when the current pass began; the next pass's since once it has fetched anything."),
        Column("etag", "string", "ETag of the next pass's first page, for If-None-Match (304s cost no quota)."),
        Column("issues_fetched", "long", "Issue objects (pull requests included) written by this pass so far."),
        Column("raw_file", "string", "JSON Lines file of this pass's raw issue objects."),
        Column("raw_offset", "long", "Bytes of raw_file covered by this checkpoint; a resume truncates the file here."),
        Column("error", "string", "Last error for this repository (GitHub's message or the retry reason); never holds a token."),
        RUN_ID,
        Column("updated_at", "timestamp", "When the checkpoint was written.", nullable=False),
    ),
))
