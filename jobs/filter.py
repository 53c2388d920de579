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
from collections.abc import Iterator
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
from schemas.lakehouse import BRONZE_ISSUES, SILVER_EXCLUDED, SILVER_ISSUES, SILVER_REPOSITORIES

REASONS = ("pull_request", "bot_author", "excluded_repository", "non_english_repository", "non_english", "duplicate")
_CODE = re.compile(r"```.*?(```|$)|`[^`\n]*`|https?://\S+|<[^>]+>|^\s*(File \"|at |\w+Error|Traceback).*$", re.S | re.M)
_WORD_SPLIT = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z])(?=[A-Z])")
_NORMALIZE = re.compile(r"[^a-z0-9]+")
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
    """Prose for language detection: code, tracebacks, URLs and markup removed, first 600 chars."""
    return re.sub(r"\s+", " ", _CODE.sub(" ", f"{title}\n{body or ''}")).strip()[:600]


def detect_language(texts: pd.Series, min_chars: int) -> pd.DataFrame:
    """(language, confidence) per text with py3langid; texts shorter than ``min_chars`` get no verdict."""
    if "id" not in _LANG:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        _LANG["id"] = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    ident = _LANG["id"]
    langs, confs = [], []
    for text in texts:
        if text is None or len(text) < min_chars:
            langs.append(None)
            confs.append(None)
        else:
            lang, conf = ident.classify(text)
            langs.append(lang)
            confs.append(float(conf))
    return pd.DataFrame({"language": langs, "language_confidence": confs})


def normalized_text(title: Any, body: Any) -> Any:
    """Spark column: lower-case title + body with punctuation and whitespace folded (exact-duplicate key)."""
    text = F.lower(F.concat_ws(" ", title, F.coalesce(body, F.lit(""))))
    return F.trim(F.regexp_replace(text, r"[^a-z0-9]+", " "))


def _shingles(text: str, k: int = 3) -> set[int]:
    words = text.split()
    if len(words) < k:
        return {hash(" ".join(words))}
    return {hash(" ".join(words[i:i + k])) for i in range(len(words) - k + 1)}


def near_duplicates(numbers: list[int], texts: list[str], threshold: float, bands: int = 16, rows: int = 4) -> dict[int, int]:
    """{duplicate number: kept number} among one repository's issues by MinHash LSH on word 3-shingles.

    Candidates share a band of the MinHash signature; a pair is a duplicate when its exact
    Jaccard similarity is at least ``threshold``. The earliest issue (lowest number) is kept.
    """
    order = np.argsort(numbers)
    numbers = [numbers[i] for i in order]
    sets = [_shingles(texts[i]) for i in order]
    rng = np.random.default_rng(7)
    perms = bands * rows
    a = rng.integers(1, (1 << 31) - 1, perms, dtype=np.uint64)
    b = rng.integers(0, (1 << 31) - 1, perms, dtype=np.uint64)
    prime = np.uint64((1 << 31) - 1)
    buckets: dict[tuple[int, bytes], list[int]] = {}
    for idx, shingles in enumerate(sets):
        values = np.fromiter((h & 0x7FFFFFFF for h in shingles), dtype=np.uint64, count=len(shingles))
        signature = ((np.outer(values, a) + b) % prime).min(axis=0)
        for band in range(bands):
            buckets.setdefault((band, signature[band * rows:(band + 1) * rows].tobytes()), []).append(idx)
    duplicate_of: dict[int, int] = {}
    for members in buckets.values():
        for pos, j in enumerate(members[1:], start=1):
            if numbers[j] in duplicate_of:
                continue
            for i in members[:pos]:
                if numbers[i] in duplicate_of:
                    continue
                union = len(sets[i] | sets[j])
                if union and len(sets[i] & sets[j]) / union >= threshold:
                    duplicate_of[numbers[j]] = numbers[i]
                    break
    return duplicate_of


def _near_duplicate_groups(threshold: float):
    def apply(pdf: pd.DataFrame) -> pd.DataFrame:
        found = near_duplicates(pdf["number"].tolist(), pdf["norm"].tolist(), threshold)
        return pd.DataFrame({"repository": pdf["repository"].iloc[0], "number": list(found), "kept": list(found.values())},
                            columns=["repository", "number", "kept"])
    return apply


def _language_batches(min_chars: int):
    def apply(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for pdf in batches:
            texts = [language_text(t, b) for t, b in zip(pdf["title"], pdf["body"])]
            detected = detect_language(pd.Series(texts), min_chars)
            yield pd.concat([pdf[["repository", "number"]].reset_index(drop=True), detected], axis=1)
    return apply


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

    lang_schema = "repository string, number long, language string, language_confidence double"
    langs = remaining.select("repository", "number", "title", "body").mapInPandas(_language_batches(cfg.language_min_chars), lang_schema)
    confident_other = (F.col("language").isNotNull() & (F.col("language") != cfg.language)
                       & (F.col("language_confidence") >= cfg.language_min_confidence))
    repo_lang = (
        langs.groupBy("repository")
        .agg((F.sum(F.when(confident_other, 1).otherwise(0)) / F.greatest(F.count("language"), F.lit(1))).alias("other_share"))
    )
    remaining = remaining.join(langs, ["repository", "number"]).join(repo_lang, "repository")
    remaining = remaining.withColumn(
        "_x",
        F.when(F.col("other_share") > 0.5, _why("non_english_repository", F.format_string("%.0f%% of issues not %s", F.col("other_share") * 100, F.lit(cfg.language))))
        .when(confident_other, _why("non_english", F.format_string("%s (%.2f)", F.col("language"), F.col("language_confidence")))),
    ).persist()

    kept = remaining.where(F.col("_x").isNull()).withColumn("norm", normalized_text(F.col("title"), F.col("body")))
    exact_first = kept.groupBy("repository", "norm").agg(F.min("number").alias("kept"))
    kept = kept.join(exact_first, ["repository", "norm"])
    exact = kept.where(F.col("number") != F.col("kept")).select("repository", "number", F.format_string("same text as #%d", F.col("kept")).alias("detail"))
    unique = kept.where(F.col("number") == F.col("kept")).drop("kept")
    near = unique.select("repository", "number", "norm").groupBy("repository").applyInPandas(
        _near_duplicate_groups(cfg.near_duplicate_threshold), "repository string, number long, kept long")
    near = near.select("repository", "number", F.format_string("near-identical to #%d", F.col("kept")).alias("detail"))
    duplicates = exact.unionByName(near).withColumn("reason", F.lit("duplicate")).persist()

    silver = (
        unique.join(duplicates.select("repository", "number"), ["repository", "number"], "left_anti")
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
        .unionByName(remaining.where(F.col("_x").isNotNull()).select("repository", "number", "_x.*"))
        .unionByName(duplicates.select("repository", "number", "reason", "detail"))
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
    finally:
        bronze.unpersist()
        spark.catalog.clearCache()
    ctx.run.wrote(SILVER_REPOSITORIES.name, SILVER_EXCLUDED.name, SILVER_ISSUES.name)
    counts = {r["reason"]: r["count"] for r in tables.read(spark, cfg, SILVER_EXCLUDED.name).groupBy("reason").count().collect()}
    frameworks = {r["framework"]: r["count"] for r in tables.read(spark, cfg, SILVER_ISSUES.name).groupBy("framework").count().collect()}
    kept = sum(frameworks.values())
    total = kept + sum(counts.values())
    table("filter: issues per reason", ["reason", "issues", "share"],
          [[reason, counts.get(reason, 0), f"{counts.get(reason, 0) / max(total, 1):.1%}"] for reason in REASONS]
          + [["kept in silver_issues", kept, f"{kept / max(total, 1):.1%}"]])
    return {"bronze": total, "silver": kept, "excluded": counts, "silver_by_framework": frameworks}
