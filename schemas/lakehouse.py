"""Bronze and silver issue tables, rejects, exclusions, repository tags and the runs ledger."""

from __future__ import annotations

from issuerisk.schemas.base import NUMBER, REPOSITORY, RUN_ID, Column, TableSpec, register

BRONZE_ISSUES = register(TableSpec(
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
        Column("framework", "string", "Framework given at ingest (pytorch, tensorflow, keras); null when to be inferred."),
        Column("raw_json", "string", "The issue object exactly as read.", nullable=False),
        Column("source_file", "string", "File the object was read from.", nullable=False),
        Column("source_line", "long", "1-based line (JSON Lines) or array index + 1 within the file.", nullable=False),
        RUN_ID,
        Column("ingested_at", "timestamp", "When this row was written.", nullable=False),
    ),
))

BRONZE_REJECTS = register(TableSpec(
    name="bronze_rejects",
    doc="Records ingest could not accept, with where they came from and why; nothing is dropped silently.",
    key=("source_file", "source_line"),
    columns=(
        Column("repository", "string", "owner/name when it could be read from the record, else null."),
        Column("number", "long", "Issue number when it could be read, else null."),
        Column("source_file", "string", "File the record came from.", nullable=False),
        Column("source_line", "long", "1-based line or array index + 1.", nullable=False),
        Column("reason", "string", "Why it was rejected: broken_json, not_an_object, missing_field, wrong_type, bad_date, out_of_range (a number beyond 64 bits, a date outside 0001-01-03..9999-12-30 UTC), bad_text (a lone surrogate), bad_encoding (bytes that are not UTF-8), bad_url (html_url not http(s)), record_too_large, file_too_large, unreadable_file, empty_file, bad_value (a value Arrow refused).", nullable=False),
        Column("detail", "string", "The field and value at fault (for bad_encoding the byte offset in the file, decompressed)."),
        Column("raw", "string", "The record's text (cut to 64 KiB); lone surrogates and invalid bytes written as \\u/\\x escapes."),
        RUN_ID,
        Column("rejected_at", "timestamp", "When the reject was written.", nullable=False),
    ),
))

SILVER_REPOSITORIES = register(TableSpec(
    name="silver_repositories",
    doc="Framework tags per repository: given at ingest or inferred from its issues' evidence.",
    key=("repository",),
    columns=(
        REPOSITORY,
        Column("frameworks", "array<string>", "Frameworks the repository uses; ['unknown'] without evidence.", nullable=False),
        Column("framework", "string", "Primary framework (most evidence), or unknown.", nullable=False),
        Column("framework_source", "string", "given or inferred.", nullable=False),
        Column("evidence", "map<string,long>", "Issues with evidence per framework (imports, tracebacks, API names)."),
        Column("issues", "long", "Issues of the repository in bronze."),
        RUN_ID,
    ),
))

SILVER_ISSUES = register(TableSpec(
    name="silver_issues",
    doc="Clean issues: no pull requests, bots, non-English texts, duplicates or tutorial/UI repositories.",
    key=("repository", "number"),
    columns=(
        REPOSITORY,
        NUMBER,
        Column("title", "string", "Issue title.", nullable=False),
        Column("body", "string", "Issue body; empty string when none."),
        Column("state", "string", "open or closed."),
        Column("labels", "array<string>", "Label names."),
        Column("user_login", "string", "Author's login."),
        Column("html_url", "string", "Link to the issue."),
        Column("created_at", "timestamp", "Opened (UTC).", nullable=False),
        Column("updated_at", "timestamp", "Last update (UTC)."),
        Column("closed_at", "timestamp", "Closed (UTC); null when open."),
        Column("is_closed", "boolean", "Closed with a closed_at; only these have a resolution time.", nullable=False),
        Column("resolution_hours", "double", "closed_at - created_at in hours; null for open issues."),
        Column("framework", "string", "Primary framework of the repository (pytorch, tensorflow, keras or unknown).", nullable=False),
        Column("frameworks", "array<string>", "All frameworks tagged on the repository.", nullable=False),
        Column("framework_source", "string", "given or inferred.", nullable=False),
        Column("language", "string", "Detected language of title + body."),
        Column("language_confidence", "double", "Detector's probability for that language."),
        RUN_ID,
    ),
))

SILVER_EXCLUDED = register(TableSpec(
    name="silver_excluded",
    doc="Every issue the filter dropped, with the rule that dropped it.",
    key=("repository", "number"),
    columns=(
        REPOSITORY,
        NUMBER,
        Column("reason", "string", "pull_request, bot_author, non_english, duplicate, excluded_repository.", nullable=False),
        Column("detail", "string", "Evidence: the login, the language, the kept duplicate, the keyword."),
        RUN_ID,
    ),
))

RUNS = register(TableSpec(
    name="runs",
    doc="One row per command: what ran, with which config, code, packages and table versions; the base for replay.",
    key=("run_id",),
    columns=(
        RUN_ID,
        Column("command", "string", "CLI command (ingest, filter, run, ...).", nullable=False),
        Column("args_json", "string", "Command-line arguments as JSON."),
        Column("status", "string", "running, succeeded, failed, or abandoned (its process was killed; found by a later command).", nullable=False),
        Column("error", "string", "Error message when failed."),
        Column("config_json", "string", "Full resolved configuration (no secrets)."),
        Column("config_hash", "string", "SHA-256 of config_json."),
        Column("git_commit", "string", "Commit of the code that ran (dirty marked with +)."),
        Column("packages", "map<string,string>", "Versions of the pinned packages."),
        Column("runtime", "map<string,string>", "Python, Java, Spark, Delta and Ray versions, host."),
        Column("seeds", "map<string,long>", "Seeds used (project, UMAP...)."),
        Column("tables_read", "map<string,long>", "Delta version of each table read."),
        Column("tables_written", "map<string,long>", "Delta version of each table after writing."),
        Column("metrics_json", "string", "Counts and timings of the stages (JSON)."),
        Column("started_at", "timestamp", "Start (UTC).", nullable=False),
        Column("ended_at", "timestamp", "End (UTC)."),
    ),
))

SILVER_ISSUE_KINDS = register(TableSpec(
    name="silver_issue_kinds",
    doc="The kind of every silver issue (defect, feature, question, documentation, other): from its GitHub labels, a classifier, or an LLM.",
    key=("repository", "number"),
    columns=(
        REPOSITORY,
        NUMBER,
        Column("kind", "string", "defect, feature, question, documentation or other.", nullable=False),
        Column("confidence", "double", "1.0 for a label's kind; the classifier's (or LLM's) probability otherwise."),
        Column("source", "string", "label (the issue's own GitHub labels decide), model (predicted) or llm.", nullable=False),
        Column("model_id", "string", "The classifier (or LLM) that predicted it, with a hash of its training data and settings."),
        RUN_ID,
    ),
))

SILVER_PROJECT_TERMS = register(TableSpec(
    name="silver_project_terms",
    doc="Words one repository holds most uses of (its name, packages, modules, template words): removed from its texts before embedding.",
    key=("repository", "term"),
    columns=(
        REPOSITORY,
        Column("term", "string", "The lower-case word.", nullable=False),
        Column("issues", "long", "Silver issues of the corpus that use it.", nullable=False),
        Column("share", "double", "Share of those issues in this repository.", nullable=False),
        RUN_ID,
    ),
))
