"""Build ``silver_issues`` from ``bronze_issues``; every dropped issue lands in ``silver_excluded``.

Rules, applied in this order (an issue is excluded for the first that holds):
``pull_request``, ``bot_author``, ``excluded_repository`` (name or description
marks a tutorial, handbook, UI, course, book...), ``non_english_repository``
(most of the repository's issues are in another language), ``non_english``
(offline detector, confident enough), ``duplicate`` (same normalized text, or
near-identical word shingles, as an earlier issue of the same repository).
Silver is a pure function of bronze and config, so it is rebuilt whole.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from conf.settings import FilterConfig
from issuerisk.context import Context
from issuerisk.display import table
from jobs import tables
from jobs.frameworks import repository_evidence, tag_repositories
from jobs.text_kernels import language_identifier, minhash_signatures, shingle_hashes
from schemas.lakehouse import BRONZE_ISSUES, SILVER_EXCLUDED, SILVER_ISSUES, SILVER_REPOSITORIES

REASONS = ("pull_request", "bot_author", "excluded_repository", "non_english_repository", "non_english", "duplicate")
_CODE = re.compile(r"```.*?(```|$)|`[^`\n]*`|https?://\S+|<[^>]+>|^\s*(File \"|at |\w+Error|Traceback).*$", re.S | re.M)
_WORD_SPLIT = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z])(?=[A-Z])")
_ALNUM_ONLY = bytes(c if 48 <= c <= 57 or 97 <= c <= 122 else 32 for c in range(256))
_LANG = {}


def repo_keyword(repository: str, description: str | None, keywords: list[str]) -> str | None:
    """The first exclusion keyword that appears as a word of the repository's name or description.

    Words are split on punctuation and camelCase, so ``DeepLearningTutorials`` matches
    ``tutorial`` while ``notebooks`` does not match ``book``; plurals count.
    """
    name = repository.split("/", 1)[-1]
    for source, text in (("name", name), ("description", description or "")):
        words = {w.lower() for w in _WORD_SPLIT.split(text) if w}
        for kw in keywords:
            if kw.lower() in words or kw.lower() + "s" in words:
                return f"{kw} in {source}"
    return None


def language_text(title: str, body: str | None) -> str:
    """Prose for language detection: code, tracebacks, URLs and markup removed, whitespace folded, first 600 chars."""
    return " ".join(_CODE.sub(" ", f"{title}\n{body or ''}").split())[:600]


def detect_language(texts: pd.Series, min_chars: int) -> pd.DataFrame:
    """(language, confidence) per text with py3langid; texts shorter than ``min_chars`` get no verdict."""
    if "id" not in _LANG:
        _LANG["id"] = language_identifier()
    judged = [i for i, text in enumerate(texts) if text is not None and len(text) >= min_chars]
    langs: list[str | None] = [None] * len(texts)
    confs: list[float | None] = [None] * len(texts)
    for i, (lang, conf) in zip(judged, _LANG["id"].classify_many([texts.iat[i] for i in judged])):
        langs[i], confs[i] = lang, conf
    return pd.DataFrame({"language": langs, "language_confidence": confs})


def normalized_text(title: str, body: str | None) -> str:
    """Lower-case title + body as words of ``[a-z0-9]`` joined by single spaces: the exact-duplicate key.

    Every other character (punctuation, whitespace, non-ASCII) separates words.
    """
    folded = f"{title} {body or ''}".lower().encode("ascii", "replace").translate(_ALNUM_ONLY)
    return " ".join(folded.decode("ascii").split())


ESTIMATE_MARGIN = 0.15  # four standard errors of a 64-hash Jaccard estimate near 0.9


def near_duplicates(numbers: list[int], texts: list[str], threshold: float, bands: int = 16, rows: int = 4) -> dict[int, int]:
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


VERDICTS = "repository string, number long, language string, language_confidence double, reason string, detail string"


def repository_verdicts(pdf: pd.DataFrame, cfg: FilterConfig) -> pd.DataFrame:
    """Language and duplicate verdicts on one repository's issues (those the earlier rules kept).

    In the rules' order: ``non_english_repository`` when more than half of the issues
    with a language verdict are confidently in another language, else ``non_english``
    per issue; then, among the rest, exact duplicates (same normalized text) and near
    duplicates (MinHash), the earliest issue kept. ``reason`` None keeps the issue.

    Args:
        pdf: columns repository, number, title, body.
    Returns:
        Columns of :data:`VERDICTS`, one row per input issue.
    """
    titles, bodies = pdf["title"].tolist(), pdf["body"].tolist()
    numbers = [int(n) for n in pdf["number"]]
    detected = detect_language(pd.Series([language_text(t, b) for t, b in zip(titles, bodies)]), cfg.language_min_chars)
    language, confidence = detected["language"].tolist(), detected["language_confidence"].tolist()
    other = [lang is not None and lang != cfg.language and conf >= cfg.language_min_confidence for lang, conf in zip(language, confidence)]
    share = sum(other) / max(sum(lang is not None for lang in language), 1)
    reason: list[str | None] = [None] * len(numbers)
    detail: list[str | None] = [None] * len(numbers)
    if share > 0.5:
        reason = ["non_english_repository"] * len(numbers)
        detail = [f"{share * 100:.0f}% of issues not {cfg.language}"] * len(numbers)
    else:
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
    return pd.DataFrame({"repository": pdf["repository"].tolist(), "number": numbers, "language": language,
                         "language_confidence": confidence, "reason": reason, "detail": detail})


def _why(reason: str, detail: Any) -> Any:
    """The exclusion struct (reason, detail) used by every rule."""
    return F.struct(F.lit(reason).alias("reason"), detail.cast("string").alias("detail"))


def build_silver(bronze: DataFrame, repos: DataFrame, descriptions: DataFrame, cfg: FilterConfig, run_id: str) -> tuple[DataFrame, DataFrame]:
    """(silver_issues, silver_excluded) from bronze issues and repository tags; pure DataFrame logic."""
    spark = bronze.sparkSession
    bots = "|".join(f"(?i:{p})" for p in cfg.bot_login_patterns)
    names = bronze.select("repository").distinct().join(descriptions, "repository", "left")
    excluded_repos = [(r["repository"], hit) for r in names.collect()
                      if (hit := repo_keyword(r["repository"], r["description"], cfg.excluded_repo_keywords))]
    repo_hits = spark.createDataFrame(excluded_repos or [], "repository string, repo_hit string")

    issues = (
        bronze.select("repository", "number", "title", "body", "state", "labels", "user_login", "user_type", "html_url",
                      "created_at", "updated_at", "closed_at", "is_pull_request")
        .join(repos.select("repository", "framework", "frameworks", "framework_source"), "repository", "left")
        .join(repo_hits, "repository", "left")
    )
    first = (
        F.when(F.col("is_pull_request"), _why("pull_request", F.col("html_url")))
        .when((F.col("user_type") == "Bot") | F.coalesce(F.col("user_login").rlike(bots), F.lit(False)),
              _why("bot_author", F.col("user_login")))
        .when(F.col("repo_hit").isNotNull(), _why("excluded_repository", F.col("repo_hit")))
    )
    staged = issues.withColumn("_x", first).persist()
    remaining = staged.where(F.col("_x").isNull())

    # One Python pass per repository (language, then duplicates): its verdicts are small and cached,
    # so the texts cross to Python once.
    verdicts = (
        remaining.select("repository", "number", "title", "body").groupBy("repository")
        .applyInPandas(lambda pdf: repository_verdicts(pdf, cfg), VERDICTS).persist()
    )
    judged = remaining.drop("_x").join(verdicts, ["repository", "number"])

    silver = (
        judged.where(F.col("reason").isNull())
        .withColumn("body", F.coalesce(F.col("body"), F.lit("")))
        .withColumn("is_closed", (F.col("state") == "closed") & F.col("closed_at").isNotNull())
        .withColumn("resolution_hours", F.when(F.col("is_closed"), (F.unix_micros("closed_at") - F.unix_micros("created_at")) / 3.6e9))
        .withColumn("resolution_hours", F.when(F.col("resolution_hours") >= 0, F.col("resolution_hours")))
        .withColumn("framework", F.coalesce(F.col("framework"), F.lit("unknown")))
        .withColumn("frameworks", F.coalesce(F.col("frameworks"), F.array(F.lit("unknown"))))
        .withColumn("framework_source", F.coalesce(F.col("framework_source"), F.lit("inferred")))
        .withColumn("run_id", F.lit(run_id))
    )
    excluded = (
        staged.where(F.col("_x").isNotNull()).select("repository", "number", "_x.*")
        .unionByName(verdicts.where(F.col("reason").isNotNull()).select("repository", "number", "reason", "detail"))
        .withColumn("run_id", F.lit(run_id))
    )
    return silver, excluded


def _descriptions(ctx: Context) -> DataFrame:
    """Repository descriptions from the crawler's ``bronze_repos`` (empty when nothing was discovered)."""
    return tables.read(ctx.spark, ctx.cfg, "bronze_repos").select("repository", "description")


def run(ctx: Context) -> dict[str, Any]:
    """Rebuild silver_issues, silver_excluded and silver_repositories from bronze; print counts per reason."""
    spark, cfg = ctx.spark, ctx.cfg
    ctx.run.read(BRONZE_ISSUES.name, "bronze_repos")
    bronze = tables.read(spark, cfg, BRONZE_ISSUES.name).drop("raw_json").persist()
    try:
        evidence = repository_evidence(bronze.where(~F.col("is_pull_request")))
        repos = tag_repositories(evidence, cfg.frameworks, ctx.run.run_id)
        tables.overwrite(spark, cfg, SILVER_REPOSITORIES, repos)
        repos = tables.read(spark, cfg, SILVER_REPOSITORIES.name)
        silver, excluded = build_silver(bronze, repos, _descriptions(ctx), cfg.filter, ctx.run.run_id)
        tables.overwrite(spark, cfg, SILVER_EXCLUDED, excluded)
        tables.overwrite(spark, cfg, SILVER_ISSUES, silver)
        # Counted from the cached frames that were just written, not by reading the tables back.
        counts = {r["reason"]: r["count"] for r in excluded.groupBy("reason").count().collect()}
        frameworks = {r["framework"]: r["count"] for r in silver.groupBy("framework").count().collect()}
    finally:
        bronze.unpersist()
        spark.catalog.clearCache()
    ctx.run.wrote(SILVER_REPOSITORIES.name, SILVER_EXCLUDED.name, SILVER_ISSUES.name)
    kept = sum(frameworks.values())
    total = kept + sum(counts.values())
    table("filter: issues per reason", ["reason", "issues", "share"],
          [[reason, counts.get(reason, 0), f"{counts.get(reason, 0) / max(total, 1):.1%}"] for reason in REASONS]
          + [["kept in silver_issues", kept, f"{kept / max(total, 1):.1%}"]])
    return {"bronze": total, "silver": kept, "excluded": counts, "silver_by_framework": frameworks}
