"""Silver tables: clean issues, repositories, exclusions with reasons, issue kinds, project terms, the summary cache and
the
embedding failures (current state, MERGEd by key)."""

from __future__ import annotations

from issuerisk.schemas.base import NUMBER, REPOSITORY, RUN_ID, Column, TableSpec, register

SILVER_REPOSITORIES = register(
    TableSpec(
        name="silver_repositories",
        doc="Framework tags per repository: given at ingest or inferred from its issues' evidence.",
        key=("repository",),
        columns=(
            REPOSITORY,
            Column(
                "frameworks",
                "array<string>",
                "Frameworks the repository uses; ['unknown'] without evidence.",
                nullable=False,
            ),
            Column("framework", "string", "Primary framework (most evidence), or unknown.", nullable=False),
            Column("framework_source", "string", "given or inferred.", nullable=False),
            Column(
                "evidence", "map<string,long>", "Issues with evidence per framework (imports, tracebacks, API names)."
            ),
            Column("issues", "long", "Issues of the repository in bronze."),
            RUN_ID,
        ),
    )
)

SILVER_ISSUES = register(
    TableSpec(
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
            Column(
                "is_closed", "boolean", "Closed with a closed_at; only these have a resolution time.", nullable=False
            ),
            Column("resolution_hours", "double", "closed_at - created_at in hours; null for open issues."),
            Column(
                "framework",
                "string",
                "Primary framework of the repository (pytorch, tensorflow, keras or unknown).",
                nullable=False,
            ),
            Column("frameworks", "array<string>", "All frameworks tagged on the repository.", nullable=False),
            Column("framework_source", "string", "given or inferred.", nullable=False),
            Column("language", "string", "Detected language of title + body."),
            Column("language_confidence", "double", "Detector's probability for that language."),
            RUN_ID,
        ),
    )
)

SILVER_EXCLUDED = register(
    TableSpec(
        name="silver_excluded",
        doc="Every issue the filter dropped, with the rule that dropped it.",
        key=("repository", "number"),
        columns=(
            REPOSITORY,
            NUMBER,
            Column(
                "reason",
                "string",
                "pull_request, bot_author, non_english, duplicate, excluded_repository.",
                nullable=False,
            ),
            Column("detail", "string", "Evidence: the login, the language, the kept duplicate, the keyword."),
            RUN_ID,
        ),
    )
)

SILVER_ISSUE_KINDS = register(
    TableSpec(
        name="silver_issue_kinds",
        doc="The kind of every silver issue (defect, feature, question, documentation, other): from its GitHub labels, "
        "a classifier, or an LLM.",
        key=("repository", "number"),
        columns=(
            REPOSITORY,
            NUMBER,
            Column("kind", "string", "defect, feature, question, documentation or other.", nullable=False),
            Column(
                "confidence", "double", "1.0 for a label's kind; the classifier's (or LLM's) probability otherwise."
            ),
            Column(
                "source",
                "string",
                "label (the issue's own GitHub labels decide), model (predicted) or llm.",
                nullable=False,
            ),
            Column(
                "model_id",
                "string",
                "The classifier (or LLM) that predicted it, with a hash of its training data and settings.",
            ),
            RUN_ID,
        ),
    )
)

SILVER_KIND_ANSWERS = register(
    TableSpec(
        name="silver_kind_answers",
        doc="Kinds an LLM named (kinds.method llm), keyed by a hash of its identity, the issue and its text: a rerun "
        "asks only for new or edited issues.",
        key=("cache_key",),
        columns=(
            Column(
                "cache_key", "string", "SHA-256 of the LLM's model id, the issue key, title and body.", nullable=False
            ),
            REPOSITORY,
            NUMBER,
            Column("kind", "string", "defect, feature, question, documentation or other.", nullable=False),
            Column("model_id", "string", "llm-<model>-<prompt version>-<prompt hash>.", nullable=False),
            Column("input_tokens", "long", "Prompt tokens the endpoint reported."),
            Column("output_tokens", "long", "Completion tokens the endpoint reported."),
            RUN_ID,
        ),
    )
)

SILVER_ISSUE_VERSIONS = register(
    TableSpec(
        name="silver_issue_versions",
        doc="The PyTorch, TensorFlow and Keras versions each silver issue reports in its text (major.minor), with the "
        "rule that found it and the text it was read from (issuerisk.text.versions).",
        key=("repository", "number", "framework", "version"),
        columns=(
            REPOSITORY,
            NUMBER,
            Column(
                "framework",
                "string",
                "pytorch, tensorflow or keras: the framework whose version it is.",
                nullable=False,
            ),
            Column("version", "string", "major.minor (a bare TensorFlow major, e.g. 2, as written).", nullable=False),
            Column(
                "found_in",
                "string",
                "The rule that found it: requirement, pip show, version attribute or mention.",
                nullable=False,
            ),
            Column("evidence", "string", "The text it was read from (at most 80 characters)."),
            RUN_ID,
        ),
    )
)

SILVER_PROJECT_TERMS = register(
    TableSpec(
        name="silver_project_terms",
        doc="Words one repository holds most uses of (its name, packages, modules, template words): removed from its "
        "texts before embedding.",
        key=("repository", "term"),
        columns=(
            REPOSITORY,
            Column("term", "string", "The lower-case word.", nullable=False),
            Column("issues", "long", "Silver issues of the corpus that use it.", nullable=False),
            Column("share", "double", "Share of those issues in this repository.", nullable=False),
            RUN_ID,
        ),
    )
)

CACHE_KEY = Column(
    "cache_key",
    "string",
    "SHA-256 of summarizer kind, model, prompt version, the issue key, title and body.",
    nullable=False,
)

SUMMARIZER = Column("summarizer", "string", "extractive or llm.", nullable=False)

MODEL = Column("model", "string", "LLM model name, or the extractive rules' version.", nullable=False)

PROMPT_VERSION = Column(
    "prompt_version", "string", "Prompt version and prompt hash (llm) or token budget (extractive).", nullable=False
)

IDENTITY = (CACHE_KEY, REPOSITORY, NUMBER, SUMMARIZER, MODEL, PROMPT_VERSION)

SILVER_SUMMARIES = register(
    TableSpec(
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
    )
)

SILVER_SUMMARY_FAILURES = register(
    TableSpec(
        name="silver_summary_failures",
        doc="Issues a summarizer could not summarize, with the reason; a rerun tries them again.",
        key=("cache_key",),
        columns=(
            *IDENTITY,
            Column(
                "reason",
                "string",
                "rate_limited, server_error, timeout, connection, bad_request, malformed, empty or refused.",
                nullable=False,
            ),
            Column("detail", "string", "The status, message or answer at fault (never a key)."),
            Column("calls", "long", "Requests made for this issue in the failing run, retries included."),
            RUN_ID,
            Column("failed_at", "timestamp", "When the last attempt failed.", nullable=False),
        ),
    )
)

EMBED_FAILURES = register(
    TableSpec(
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
    )
)
