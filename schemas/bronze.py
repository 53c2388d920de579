"""Bronze tables: issue objects as crawled or ingested, their rejects, and the crawler's repositories and
checkpoints."""

from __future__ import annotations

from issuerisk.schemas.base import NUMBER, REPOSITORY, RUN_ID, Column, TableSpec, register

BRONZE_REPOS = register(
    TableSpec(
        name="bronze_repos",
        doc="Repositories found by GitHub search per framework, with why any was excluded.",
        key=("repository",),
        columns=(
            REPOSITORY,
            Column(
                "frameworks",
                "array<string>",
                "Frameworks whose search found it (union over discovery runs).",
                nullable=False,
            ),
            Column("stars", "long", "stargazers_count at discovery."),
            Column("description", "string", "Repository description."),
            Column("language", "string", "Primary language GitHub reports."),
            Column("topics", "array<string>", "Repository topics."),
            Column("has_issues", "boolean", "Whether the issue tracker is enabled."),
            Column("created_at", "timestamp", "Repository creation (UTC)."),
            Column("pushed_at", "timestamp", "Last push (UTC)."),
            Column(
                "excluded_reason",
                "string",
                "Why it is not crawled ('tutorial in name', 'ui in description', 'issues disabled'); null when "
                "selected.",
            ),
            RUN_ID,
            Column("discovered_at", "timestamp", "When this row was written.", nullable=False),
        ),
    )
)

CRAWL_CHECKPOINTS = register(
    TableSpec(
        name="crawl_checkpoints",
        doc="Per-repository crawl progress, so a killed crawl resumes without losing or duplicating issues.",
        key=("repository",),
        columns=(
            REPOSITORY,
            Column(
                "status",
                "string",
                "in_progress, fetched (awaiting ingest), done, gone (404), issues_disabled (410), blocked (451).",
                nullable=False,
            ),
            Column("next_url", "string", "Next page to fetch while in progress (its query holds the pass's since)."),
            Column(
                "since",
                "string",
                "While in progress: the since of this pass; otherwise the since of the next incremental pass.",
            ),
            Column(
                "pass_started",
                "string",
                "Server time when the current pass began; the next pass's since once it has fetched anything.",
            ),
            Column("etag", "string", "ETag of the next pass's first page, for If-None-Match (304s cost no quota)."),
            Column("issues_fetched", "long", "Issue objects (pull requests included) written by this pass so far."),
            Column("raw_file", "string", "JSON Lines file of this pass's raw issue objects."),
            Column(
                "raw_offset", "long", "Bytes of raw_file covered by this checkpoint; a resume truncates the file here."
            ),
            Column(
                "error",
                "string",
                "Last error for this repository (GitHub's message or the retry reason); never holds a token.",
            ),
            RUN_ID,
            Column("updated_at", "timestamp", "When the checkpoint was written.", nullable=False),
        ),
    )
)

BRONZE_ISSUES = register(
    TableSpec(
        name="bronze_issues",
        doc="GitHub issue objects as the REST API returned them, one row per issue, newest updated_at wins.",
        key=("repository", "number"),
        columns=(
            REPOSITORY,
            NUMBER,
            Column("id", "long", "GitHub's global issue id.", nullable=False),
            Column("title", "string", "Issue title.", nullable=False),
            Column("body", "string", "Issue body (Markdown); null when empty."),
            Column("state", "string", "open or closed."),
            Column("state_reason", "string", "completed, not_planned, reopened or null."),
            Column("labels", "array<string>", "Label names."),
            Column("user_login", "string", "Author's login."),
            Column("user_type", "string", "Author's account type: User, Bot or Organization."),
            Column("author_association", "string", "Author's relation to the repository (OWNER, MEMBER, NONE...)."),
            Column("comments", "long", "Number of comments at crawl time."),
            Column("is_pull_request", "boolean", "True when the object has a pull_request member.", nullable=False),
            Column("html_url", "string", "Link to the issue on GitHub."),
            Column("created_at", "timestamp", "When the issue was opened (UTC).", nullable=False),
            Column("updated_at", "timestamp", "Last update (UTC); the merge keeps the newest."),
            Column("closed_at", "timestamp", "When it was closed (UTC); null when open."),
            Column(
                "framework",
                "string",
                "Framework given at ingest (pytorch, tensorflow, keras); null when to be inferred.",
            ),
            Column("raw_json", "string", "The issue object exactly as read.", nullable=False),
            Column("source_file", "string", "File the object was read from.", nullable=False),
            Column(
                "source_line", "long", "1-based line (JSON Lines) or array index + 1 within the file.", nullable=False
            ),
            RUN_ID,
            Column("ingested_at", "timestamp", "When this row was written.", nullable=False),
        ),
    )
)

BRONZE_REJECTS = register(
    TableSpec(
        name="bronze_rejects",
        doc="Records ingest could not accept, with where they came from and why; nothing is dropped silently.",
        key=("source_file", "source_line"),
        columns=(
            Column("repository", "string", "owner/name when it could be read from the record, else null."),
            Column("number", "long", "Issue number when it could be read, else null."),
            Column("source_file", "string", "File the record came from.", nullable=False),
            Column("source_line", "long", "1-based line or array index + 1.", nullable=False),
            Column(
                "reason",
                "string",
                "Why it was rejected: broken_json, not_an_object, missing_field, wrong_type, bad_date, out_of_range (a "
                "number beyond 64 bits, a date outside 0001-01-03..9999-12-30 UTC), bad_text (a lone surrogate), "
                "bad_encoding (bytes that are not UTF-8), bad_url (html_url not http(s)), record_too_large, "
                "file_too_large, unreadable_file, empty_file, bad_value (a value Arrow refused).",
                nullable=False,
            ),
            Column(
                "detail",
                "string",
                "The field and value at fault (for bad_encoding the byte offset in the file, decompressed).",
            ),
            Column(
                "raw",
                "string",
                "The record's text (cut to 64 KiB); lone surrogates and invalid bytes written as \\u/\\x escapes.",
            ),
            RUN_ID,
            Column("rejected_at", "timestamp", "When the reject was written.", nullable=False),
        ),
    )
)
