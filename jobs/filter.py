"""Build ``silver_issues`` from ``bronze_issues``; every dropped issue lands in ``silver_excluded``.

Rules, applied in this order (an issue is excluded for the first that holds):
``pull_request``, ``bot_author``, ``excluded_repository`` (name or description
marks a tutorial, handbook, UI, course, book...), ``non_english_repository``
(most of the repository's issues are in another language), ``non_english``
(offline detector, confident enough), ``duplicate`` (same normalized text, or
near-identical word shingles, as an earlier issue of the same repository).
Silver is a pure function of bronze and config, so it is rebuilt whole, from
the bronze version the run records, and each of the three tables' commits notes
that build (:mod:`issuerisk.silver`).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema

from issuerisk.conf import Config
from issuerisk.conf.settings import FilterConfig
from issuerisk.context import Context
from issuerisk.display import table
from issuerisk.schemas.bronze import BRONZE_ISSUES, BRONZE_REPOS
from issuerisk.schemas.silver import SILVER_EXCLUDED, SILVER_ISSUES, SILVER_REPOSITORIES
from issuerisk.stage import Stage
from issuerisk.text.authors import bot_login_pattern
from issuerisk.text.frameworks import EVIDENCE, evidence_aggregates, issue_evidence, tag_repositories
from issuerisk.text.kernels import language_identifier, minhash_signatures, shingle_hashes
from issuerisk.text.repos import repo_keyword

REASONS = ("pull_request", "bot_author", "excluded_repository", "non_english_repository", "non_english", "duplicate")
_CODE = re.compile(r"```.*?(```|$)|`[^`\n]*`|https?://\S+|<[^>]+>|^\s*(File \"|at |\w+Error|Traceback).*$", re.S | re.M)
_ALNUM_ONLY = bytes(c if 48 <= c <= 57 or 97 <= c <= 122 else 32 for c in range(256))
_LANG = {}


def language_text(title: str, body: str | None) -> str:
    """Prose for language detection: code, tracebacks, URLs and markup removed, whitespace folded, first 600 chars."""
    return " ".join(_CODE.sub(" ", f"{title}\n{body or ''}").split())[:600]


def detect_language(texts: list[str], min_chars: int) -> tuple[list[str | None], list[float | None]]:
    """(languages, confidences) by py3langid; texts shorter than ``min_chars`` get no verdict (None)."""
    if "id" not in _LANG:
        _LANG["id"] = language_identifier()
    judged = [i for i, text in enumerate(texts) if text is not None and len(text) >= min_chars]
    langs: list[str | None] = [None] * len(texts)
    confs: list[float | None] = [None] * len(texts)
    for i, (lang, conf) in zip(judged, _LANG["id"].classify_many([texts[i] for i in judged])):
        langs[i], confs[i] = lang, conf
    return langs, confs


def normalized_text(title: str, body: str | None) -> str:
    """Lower-case title + body as words of ``[a-z0-9]`` joined by single spaces: the exact-duplicate key.

    Every other character (punctuation, whitespace, non-ASCII) separates words.
    """
    folded = f"{title} {body or ''}".lower().encode("ascii", "replace").translate(_ALNUM_ONLY)
    return " ".join(folded.decode("ascii").split())


ESTIMATE_MARGIN = 0.15  # four standard errors of a 64-hash Jaccard estimate near 0.9


def near_duplicates(
    numbers: list[int], texts: list[str], threshold: float, bands: int = 16, rows: int = 4
) -> dict[int, int]:
    """{duplicate number: kept number} among one repository's issues by MinHash LSH on word 3-shingles.

    Candidates share a band of the MinHash signature; a pair is a duplicate when its exact
    Jaccard similarity is at least ``threshold``. The earliest issue (lowest number) is kept.
    """
    order = np.argsort(numbers, kind="stable")
    numbers = [numbers[i] for i in order]
    sets = [shingle_hashes(texts[i]) for i in order]
    signatures = minhash_signatures(sets, bands * rows)
    band_keys = np.ascontiguousarray(signatures).view(np.dtype((np.void, 8 * rows)))  # (texts, bands)
    duplicate_of: dict[int, int] = {}
    compared: set[tuple[int, int]] = set()
    for band in range(bands):
        _, group, sizes = np.unique(band_keys[:, band], return_inverse=True, return_counts=True)
        for g in np.flatnonzero(sizes > 1):
            members = np.flatnonzero(group == g)  # ascending: earliest issue first
            for pos in range(1, len(members)):
                j = members[pos]
                if numbers[j] in duplicate_of:
                    continue
                earlier = members[:pos]
                # The signatures' agreement estimates Jaccard within about 0.04 (64 hashes); only
                # pairs it does not rule out get the exact (slower) set comparison.
                estimate = (signatures[earlier] == signatures[j]).mean(axis=1)
                for i in earlier[estimate >= threshold - ESTIMATE_MARGIN]:
                    if numbers[i] in duplicate_of or (i, j) in compared:
                        continue
                    compared.add((i, j))  # pairs meet again in other bands
                    common = len(np.intersect1d(sets[i], sets[j], assume_unique=True))
                    if common / (len(sets[i]) + len(sets[j]) - common) >= threshold:
                        duplicate_of[numbers[j]] = numbers[i]
                        break
    return duplicate_of


VERDICTS = pa.schema(
    [
        ("repository", pa.string()),
        ("number", pa.int64()),
        ("framework", pa.string()),
        ("language", pa.string()),
        ("language_confidence", pa.float64()),
        ("reason", pa.string()),
        ("detail", pa.string()),
        *[(fw, pa.int32()) for fw in EVIDENCE],
    ]
)


def judge_texts(
    numbers: list[int], titles: list[str], bodies: list[str | None], cfg: FilterConfig
) -> tuple[list, list, list, list]:
    """(language, confidence, reason, detail) per issue by the language and duplicate rules.

    In the rules' order: ``non_english_repository`` when more than half of the issues
    with a language verdict are confidently in another language, else ``non_english``
    per issue; then, among the rest, exact duplicates (same normalized text) and near
    duplicates (MinHash), the earliest issue kept. ``reason`` None keeps the issue.
    """
    language, confidence = detect_language(
        [language_text(t, b) for t, b in zip(titles, bodies)], cfg.language_min_chars
    )
    other = [
        lang is not None and lang != cfg.language and conf >= cfg.language_min_confidence
        for lang, conf in zip(language, confidence)
    ]
    share = sum(other) / max(sum(lang is not None for lang in language), 1)
    reason: list[str | None] = [None] * len(numbers)
    detail: list[str | None] = [None] * len(numbers)
    if share > 0.5:
        reason = ["non_english_repository"] * len(numbers)
        detail = [f"{share * 100:.0f}% of issues not {cfg.language}"] * len(numbers)
        return language, confidence, reason, detail
    for i in (i for i, o in enumerate(other) if o):
        reason[i], detail[i] = "non_english", f"{language[i]} ({confidence[i]:.2f})"
    first_with: dict[str, int] = {}  # normalized text -> its earliest issue; the rest are exact duplicates
    for i in sorted((i for i in range(len(numbers)) if reason[i] is None), key=numbers.__getitem__):
        key = normalized_text(titles[i], bodies[i])
        if key in first_with:
            reason[i], detail[i] = "duplicate", f"same text as #{numbers[first_with[key]]}"
        else:
            first_with[key] = i
    at = {numbers[i]: i for i in first_with.values()}
    near = near_duplicates(list(at), list(first_with), cfg.near_duplicate_threshold)
    for number, kept in near.items():
        reason[at[number]], detail[at[number]] = "duplicate", f"near-identical to #{kept}"
    return language, confidence, reason, detail


def repository_verdicts(issues: pa.Table, cfg: FilterConfig, descriptions: dict[str, str]) -> pa.Table:
    """Every rule and the framework evidence on one repository's issues, in the rules' order.

    ``pull_request`` and ``bot_author`` per issue, then ``excluded_repository`` (the
    repository's name or description), then :func:`judge_texts` on the issues still
    kept. Evidence (:func:`issuerisk.text.frameworks.issue_evidence`) is taken from every issue
    that is not a pull request, bots included.

    Args:
        issues: one repository's bronze rows: repository, number, title, body (null for
            pull requests: they need none), framework, is_pull_request, pr_url (a pull
            request's html_url), is_bot, user_login.
        descriptions: repository -> description (from ``bronze_repos``; may lack it).
    Returns:
        Columns of :data:`VERDICTS`, one row per issue.
    """
    col = {name: issues.column(name).to_pylist() for name in issues.column_names}
    numbers, titles, bodies, pulls = col["number"], col["title"], col["body"], col["is_pull_request"]
    n = len(numbers)
    repository = col["repository"][0] if n else ""
    reason: list[str | None] = [None] * n
    detail: list[str | None] = [None] * n
    for i, (pull, url, bot, login) in enumerate(zip(pulls, col["pr_url"], col["is_bot"], col["user_login"])):
        if pull:
            reason[i], detail[i] = "pull_request", url
        elif bot:
            reason[i], detail[i] = "bot_author", login
    hit = repo_keyword(repository, descriptions.get(repository), cfg.excluded_repo_keywords)
    judged = [i for i in range(n) if reason[i] is None]
    language: list[str | None] = [None] * n
    confidence: list[float | None] = [None] * n
    if hit:
        for i in judged:
            reason[i], detail[i] = "excluded_repository", hit
    elif judged:
        verdicts = judge_texts(
            [numbers[i] for i in judged], [titles[i] for i in judged], [bodies[i] for i in judged], cfg
        )
        for k, i in enumerate(judged):
            language[i], confidence[i], reason[i], detail[i] = (v[k] for v in verdicts)
    none = (0,) * len(EVIDENCE)
    evidence = list(zip(*(none if pull else issue_evidence(t, b) for t, b, pull in zip(titles, bodies, pulls)))) or [
        []
    ] * len(EVIDENCE)
    return pa.table(
        {
            "repository": col["repository"],
            "number": numbers,
            "framework": col["framework"],
            "language": language,
            "language_confidence": confidence,
            "reason": reason,
            "detail": detail,
            **{fw: list(flags) for fw, flags in zip(EVIDENCE, evidence)},
        },
        schema=VERDICTS,
    )


@dataclass(frozen=True)
class Silver:
    """What the filter writes, and its counts (taken in the same pass as the framework tags)."""

    issues: DataFrame
    excluded: DataFrame
    repositories: DataFrame
    excluded_by_reason: dict[str, int]
    kept_by_framework: dict[str, int]


def build_silver(bronze: DataFrame, descriptions: dict[str, str], cfg: Config, run_id: str) -> Silver:
    """silver_issues, silver_excluded and silver_repositories from bronze issues.

    Every rule and the framework evidence run in one Python pass per repository, so
    the texts cross to Python once; one aggregation of its verdicts then gives the
    framework tags and every count (collected: one row per repository).
    """
    rules = cfg.filter
    bots = bot_login_pattern(rules.bot_login_patterns)
    issues = bronze.select(
        "repository",
        "number",
        "title",
        "body",
        "state",
        "labels",
        "user_login",
        "user_type",
        "html_url",
        "created_at",
        "updated_at",
        "closed_at",
        "is_pull_request",
        "framework",
    )
    pull = F.col("is_pull_request")

    def verdicts_of(table: pa.Table) -> pa.Table:
        return repository_verdicts(table, rules, descriptions)

    verdicts = (
        issues.select(
            "repository",
            "number",
            "title",
            F.when(~pull, F.col("body")).alias("body"),
            "framework",
            "is_pull_request",
            F.when(pull, F.col("html_url")).alias("pr_url"),
            ((F.col("user_type") == "Bot") | F.coalesce(F.col("user_login").rlike(bots), F.lit(False))).alias("is_bot"),
            "user_login",
        )
        .groupBy("repository")
        .applyInArrow(verdicts_of, from_arrow_schema(VERDICTS))
        .persist()
    )
    reason = F.col("reason")
    per_repository = (
        verdicts.groupBy("repository")
        .agg(
            *evidence_aggregates(F.coalesce(reason != "pull_request", F.lit(True))),
            F.count(F.when(reason.isNull(), 1)).alias("kept"),
            *[F.count(F.when(reason == r, 1)).alias(f"n_{r}") for r in REASONS],
        )
        .collect()
    )
    tagged = tag_repositories(per_repository, cfg.frameworks, run_id)
    primary = {repository: framework for repository, _, framework, *_ in tagged}
    kept_by_framework: Counter[str] = Counter()
    for row in per_repository:
        if row["kept"]:
            kept_by_framework[primary[row["repository"]]] += row["kept"]
    repos = bronze.sparkSession.createDataFrame(tagged, SILVER_REPOSITORIES.spark)
    silver = (
        issues.where(~pull)
        .drop("framework", "is_pull_request")
        .join(
            verdicts.where(reason.isNull()).select("repository", "number", "language", "language_confidence"),
            ["repository", "number"],
        )
        .join(F.broadcast(repos.select("repository", "framework", "frameworks", "framework_source")), "repository")
        .withColumn("body", F.coalesce(F.col("body"), F.lit("")))
        .withColumn("is_closed", (F.col("state") == "closed") & F.col("closed_at").isNotNull())
        .withColumn(
            "resolution_hours",
            F.when(F.col("is_closed"), (F.unix_micros("closed_at") - F.unix_micros("created_at")) / 3.6e9),
        )
        .withColumn("resolution_hours", F.when(F.col("resolution_hours") >= 0, F.col("resolution_hours")))
        .withColumn("run_id", F.lit(run_id))
    )
    excluded = (
        verdicts.where(reason.isNotNull())
        .select("repository", "number", "reason", "detail")
        .withColumn("run_id", F.lit(run_id))
    )
    return Silver(
        silver,
        excluded,
        repos,
        {r: sum(row[f"n_{r}"] for row in per_repository) for r in REASONS},
        dict(kept_by_framework),
    )


def _descriptions(ctx: Context) -> dict[str, str]:
    """Repository descriptions from the crawler's ``bronze_repos`` (empty when nothing was discovered)."""
    rows = ctx.lake.arrow.read(BRONZE_REPOS, columns=["repository", "description"]).to_pylist()
    return {r["repository"]: r["description"] for r in rows if r["description"] is not None}


def run(ctx: Context) -> dict[str, Any]:
    """Rebuild silver_issues, silver_excluded and silver_repositories from bronze; print counts per reason."""
    cfg, tables = ctx.cfg, ctx.lake.spark
    spark = tables.spark
    bronze_version = ctx.lake.arrow.version(BRONZE_ISSUES)  # this stage's input, also inside `run` after ingest wrote
    bronze = tables.read(BRONZE_ISSUES, version=bronze_version).drop("raw_json").persist()
    try:
        silver = build_silver(bronze, _descriptions(ctx), cfg, ctx.run.run_id)
        note = {"silver_build": ctx.run.run_id, "bronze_version": bronze_version}
        tables.overwrite_all(
            [
                (SILVER_REPOSITORIES, silver.repositories),
                (SILVER_EXCLUDED, silver.excluded),
                (SILVER_ISSUES, silver.issues),
            ],
            note,
        )
    finally:
        bronze.unpersist()
        spark.catalog.clearCache()
    counts, frameworks = silver.excluded_by_reason, silver.kept_by_framework
    kept = sum(frameworks.values())
    total = kept + sum(counts.values())
    table(
        "filter: issues per reason",
        ["reason", "issues", "share"],
        [[reason, counts.get(reason, 0), f"{counts.get(reason, 0) / max(total, 1):.1%}"] for reason in REASONS]
        + [["kept in silver_issues", kept, f"{kept / max(total, 1):.1%}"]],
    )
    per_framework = (
        tables.read(SILVER_ISSUES).groupBy("framework", "framework_source").count().orderBy(F.desc("count")).collect()
    )
    table(
        "silver issues per framework (Spark)",
        ["framework", "source", "issues"],
        [[r["framework"], r["framework_source"], r["count"]] for r in per_framework],
    )
    return {
        "bronze": total,
        "silver": kept,
        "excluded": {r: n for r, n in counts.items() if n},
        "silver_by_framework": frameworks,
    }


STAGE = Stage(
    "filter",
    "Build silver_issues from bronze: drop PRs, bots, non-English, duplicates, tutorial/UI repos",
    run,
    reads=(BRONZE_ISSUES.name, BRONZE_REPOS.name),
    writes=(SILVER_ISSUES.name, SILVER_EXCLUDED.name, SILVER_REPOSITORIES.name),
    sections=("filter", "frameworks"),
)
