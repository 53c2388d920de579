"""Stages ``profile`` and ``drift``: what the data looked like before it was clustered, and where to be careful.

``profile`` runs before embedding. Over the issues in scope (the seeded sample
when one is set), for all frameworks and for each framework, it measures how
concentrated the issues are in a few repositories (largest repository's share,
ten largest's share, Gini), each framework's share, empty and very short
bodies, the text-length distribution, label coverage, the open share, the
filter's exclusions by reason, and the issues per quarter. ``drift`` runs once
embeddings exist: per scope it compares the earliest and the latest
``profile.drift_period_share`` of the issues by creation time, by the cosine
distance between their mean embeddings and by the squared maximum mean
discrepancy (RBF kernel, median-distance bandwidth; a permutation p-value).

Every check is one row of ``gold_profile`` with its value, its threshold from
``profile.*`` and whether it warns: an upper limit warns at or above it, a
lower limit (``min_*``) below it. The report lists the warnings first, because
a pattern found in one dominant repository, or in issues of one era, is not a
framework risk.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from issuerisk.conf.settings import ProfileConfig
from issuerisk.context import Context
from issuerisk.display import table
from issuerisk.sampling import sampled_keys
from issuerisk.schemas.gold import GOLD_EMBEDDINGS, GOLD_PROFILE
from issuerisk.schemas.silver import SILVER_EXCLUDED, SILVER_ISSUES, SILVER_PROJECT_TERMS, SILVER_SUMMARIES
from issuerisk.stage import Stage

ISSUE_COLUMNS = ["repository", "number", "framework", "title", "body", "labels", "is_closed", "created_at"]


@dataclass(frozen=True)
class Check:
    """One measured check: ``direction`` max warns at or above ``threshold``, min below it, info never."""

    check: str
    scope: str
    value: float
    threshold: float | None
    direction: str
    message: str
    detail: Mapping[str, Any]

    @property
    def warning(self) -> bool:
        if self.threshold is None or self.direction == "info" or np.isnan(self.value):
            return False
        return self.value >= self.threshold if self.direction == "max" else self.value < self.threshold

    def row(self, run_id: str) -> dict[str, Any]:
        return {
            "run_id": run_id,
            "check": self.check,
            "scope": self.scope,
            "value": float(self.value),
            "threshold": self.threshold,
            "direction": self.direction,
            "warning": self.warning,
            "message": self.message,
            "detail_json": json.dumps(self.detail, default=str),
        }


def gini(counts: Sequence[int]) -> float:
    """Gini coefficient of non-negative counts (0: all equal; towards 1: all in one)."""
    x = np.sort(np.asarray(counts, dtype=float))
    if len(x) == 0 or x.sum() == 0:
        return 0.0
    ranks = np.arange(1, len(x) + 1)
    return float(2 * (ranks * x).sum() / (len(x) * x.sum()) - (len(x) + 1) / len(x))


def _pct(value: float) -> str:
    return f"{100 * value:.1f} %"


def _in(scope: str) -> str:
    return "all issues" if scope == "all" else f"{scope} issues"


def repository_checks(issues: pd.DataFrame, scope: str, cfg: ProfileConfig) -> list[Check]:
    """Largest repository's share, ten largest's share and the Gini of issues per repository, in one scope."""
    counts = issues["repository"].value_counts()
    n = int(counts.sum())
    top, top10 = counts.iloc[0] / n, counts.iloc[:10].sum() / n
    largest = {repo: int(c) for repo, c in counts.iloc[:10].items()}
    g = gini(counts.to_numpy())
    return [
        Check(
            "top_repository_share",
            scope,
            top,
            cfg.max_top_repository_share,
            "max",
            f"{counts.index[0]} holds {_pct(top)} of {_in(scope)} ({int(counts.iloc[0]):,} of {n:,})"
            + (
                ": a pattern it dominates is that project's, not a framework risk"
                if top >= cfg.max_top_repository_share
                else ""
            ),
            {"repositories": len(counts), "largest": largest},
        ),
        Check(
            "top10_repository_share",
            scope,
            top10,
            cfg.max_top10_repository_share,
            "max",
            f"the 10 largest of {len(counts):,} repositories hold {_pct(top10)} of {_in(scope)}",
            {"largest": largest},
        ),
        Check(
            "repository_gini",
            scope,
            g,
            cfg.max_repository_gini,
            "max",
            f"Gini of issues per repository over {_in(scope)}: {g:.2f} (0 even, 1 all in one)",
            {"repositories": len(counts)},
        ),
    ]


def text_checks(issues: pd.DataFrame, scope: str, cfg: ProfileConfig) -> list[Check]:
    """Empty and very short bodies, text-length quantiles, label coverage and open share, in one scope."""
    n = len(issues)
    body = issues["body"].fillna("").str.strip().str.len()
    empty, short = float((body == 0).mean()), float((body < cfg.short_body_chars).mean())
    length = (issues["title"].fillna("").str.len() + body).to_numpy()
    quantiles = {f"p{q}": float(np.percentile(length, q)) for q in (5, 25, 50, 75, 95)}
    labelled = float(issues["labels"].map(lambda labels: labels is not None and len(labels) > 0).mean())
    open_share = float((~issues["is_closed"].astype(bool)).mean())
    return [
        Check(
            "empty_body_share",
            scope,
            empty,
            cfg.max_empty_body_share,
            "max",
            f"{_pct(empty)} of {_in(scope)} have an empty body (only the title is summarized)",
            {"issues": n},
        ),
        Check(
            "short_body_share",
            scope,
            short,
            cfg.max_short_body_share,
            "max",
            f"{_pct(short)} of {_in(scope)} have a body under {cfg.short_body_chars} characters",
            {"issues": n},
        ),
        Check(
            "text_length",
            scope,
            quantiles["p50"],
            None,
            "info",
            f"title + body length over {_in(scope)}: median {quantiles['p50']:,.0f} characters (5-95 %: "
            f"{quantiles['p5']:,.0f}-{quantiles['p95']:,.0f})",
            quantiles,
        ),
        Check(
            "label_coverage",
            scope,
            labelled,
            cfg.min_label_coverage,
            "min",
            f"{_pct(labelled)} of {_in(scope)} carry a GitHub label"
            + ("; the others' kinds come from the classifier" if labelled < cfg.min_label_coverage else ""),
            {"issues": n},
        ),
        Check(
            "open_share",
            scope,
            open_share,
            cfg.max_open_share,
            "max",
            f"{_pct(open_share)} of {_in(scope)} are open: their time to resolve is censored",
            {"issues": n},
        ),
    ]


def quarter_counts(created: pd.Series) -> dict[str, int]:
    """Issues per calendar quarter (``2019Q3``), oldest first."""
    quarters = pd.to_datetime(created, utc=True).dt.tz_localize(None).dt.to_period("Q").astype(str)
    return {q: int(c) for q, c in quarters.value_counts().sort_index().items()}


def profile_checks(
    issues: pd.DataFrame, excluded: Mapping[str, int], cfg: ProfileConfig, silver_total: int | None = None
) -> list[Check]:
    """Every check of the data profile over ``issues`` (columns of :data:`ISSUE_COLUMNS`) and the filter's exclusions by
    reason.

    Args:
        silver_total: every silver issue (the filter's survivors), when ``issues`` is a sample of them: the excluded
            share is of everything the filter saw, one denominator (default: ``issues`` are all of them).
    """
    if issues.empty:
        return []
    n = len(issues)
    checks: list[Check] = []
    frameworks = issues["framework"].value_counts()
    for scope, part in [("all", issues), *((f, issues[issues["framework"] == f]) for f in sorted(frameworks.index))]:
        checks += repository_checks(part, scope, cfg) + text_checks(part, scope, cfg)
        quarters = quarter_counts(part["created_at"])
        checks.append(
            Check(
                "issues_per_quarter",
                scope,
                float(len(quarters)),
                None,
                "info",
                f"{_in(scope)} span {len(quarters)} quarters, {min(quarters)} to {max(quarters)}",
                quarters,
            )
        )
    if len(frameworks) > 1:
        for framework, count in frameworks.items():
            share = count / n
            checks.append(
                Check(
                    "framework_share",
                    framework,
                    share,
                    cfg.min_framework_share,
                    "min",
                    f"{framework} holds {_pct(share)} of all issues ({int(count):,})"
                    + ("; its comparisons rest on few issues" if share < cfg.min_framework_share else ""),
                    {"issues": int(count)},
                )
            )
    dropped, kept = sum(excluded.values()), n if silver_total is None else silver_total
    share = dropped / (dropped + kept) if dropped + kept else 0.0
    reasons = ", ".join(f"{reason} {count:,}" for reason, count in sorted(excluded.items(), key=lambda kv: -kv[1]))
    checks.append(
        Check(
            "excluded_share",
            "all",
            share,
            cfg.max_excluded_share,
            "max",
            f"the filter excluded {_pct(share)} of the {dropped + kept:,} ingested issues ({reasons or 'none'})",
            dict(excluded),
        )
    )
    return checks


def rbf_kernel(z: np.ndarray) -> tuple[np.ndarray, float]:
    """The RBF kernel matrix of the rows of ``z`` and its bandwidth: the median pairwise distance (the usual
    heuristic)."""
    d2 = np.maximum((z * z).sum(1)[:, None] + (z * z).sum(1)[None, :] - 2 * z @ z.T, 0)
    bandwidth = float(np.median(np.sqrt(d2[np.triu_indices(len(z), 1)]))) or 1.0
    return np.exp(-d2 / (2 * bandwidth**2)), bandwidth


def mmd2(kernel: np.ndarray, first: np.ndarray, last: np.ndarray) -> float:
    """Unbiased squared maximum mean discrepancy between the rows ``first`` and ``last`` of a kernel matrix."""
    kxx, kyy, kxy = kernel[np.ix_(first, first)], kernel[np.ix_(last, last)], kernel[np.ix_(first, last)]
    m, n = len(first), len(last)
    return float(
        (kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1)) - 2 * kxy.mean()
    )


def drift_checks(created: pd.Series, vectors: np.ndarray, scope: str, cfg: ProfileConfig, seed: int) -> list[Check]:
    """Centroid shift and MMD between the earliest and latest ``cfg.drift_period_share`` of one scope's issues.

    Returns [] when a period would hold fewer than ``cfg.min_period_issues`` issues.
    """
    order = np.argsort(pd.to_datetime(created, utc=True).to_numpy(), kind="stable")
    k = int(len(order) * cfg.drift_period_share)
    if k < cfg.min_period_issues:
        return []
    first, last = order[:k], order[-k:]
    dates = pd.to_datetime(created, utc=True).to_numpy()
    until, since = pd.Timestamp(dates[first].max()).strftime("%Y-%m"), pd.Timestamp(dates[last].min()).strftime("%Y-%m")
    a, b = vectors[first].mean(0), vectors[last].mean(0)
    shift = float(1 - a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    rng = np.random.default_rng(seed)
    x = vectors[rng.choice(first, min(k, cfg.drift_sample), replace=False)]
    y = vectors[rng.choice(last, min(k, cfg.drift_sample), replace=False)]
    kernel, bandwidth = rbf_kernel(np.vstack([x, y]))
    value = mmd2(kernel, np.arange(len(x)), np.arange(len(x), len(x) + len(y)))
    exceed = 0
    for _ in range(cfg.drift_permutations):
        perm = rng.permutation(len(kernel))
        exceed += mmd2(kernel, perm[: len(x)], perm[len(x) :]) >= value
    p_value = (exceed + 1) / (cfg.drift_permutations + 1) if cfg.drift_permutations else None
    period = f"{_in(scope)} up to {until} and from {since}"
    detail = {
        "first_until": until,
        "last_since": since,
        "issues_per_period": k,
        "sampled": len(x),
        "bandwidth": bandwidth,
        "p_value": p_value,
    }
    p_text = "" if p_value is None else f", permutation p {p_value:.3f}"
    return [
        Check(
            "embedding_mmd",
            scope,
            value,
            cfg.max_mmd,
            "max",
            f"{period} {'differ' if value >= cfg.max_mmd else 'are alike'}: MMD² {value:.4f}{p_text}",
            detail,
        ),
        Check(
            "centroid_shift",
            scope,
            shift,
            cfg.max_centroid_shift,
            "max",
            f"the mean embedding of {period} moved by cosine distance {shift:.4f}",
            detail,
        ),
    ]


def _store(ctx: Context, checks: Iterable[Check], what: str) -> dict[str, Any]:
    rows = [c.row(ctx.run.run_id) for c in checks]
    if rows:
        ctx.lake.arrow.merge(GOLD_PROFILE, pa.Table.from_pylist(rows, schema=GOLD_PROFILE.arrow))
    warnings = [r for r in rows if r["warning"]]
    table(
        f"{what}: {len(warnings)} warning(s) of {len(rows)} checks",
        ["check", "scope", "value", "threshold", "warning"],
        [
            [
                r["check"],
                r["scope"],
                f"{r['value']:.4g}",
                "" if r["threshold"] is None else f"{r['threshold']:g}",
                r["message"] if r["warning"] else "",
            ]
            for r in rows
            if r["direction"] != "info"
        ],
    )
    return {
        "checks": len(rows),
        "warnings": len(warnings),
        "warned": sorted({f"{r['check']}:{r['scope']}" for r in warnings}),
    }


def in_scope(ctx: Context) -> pd.DataFrame:
    """The silver issues a run clusters (the seeded sample when one is set)."""
    tables = ctx.lake.arrow
    issues = tables.read(SILVER_ISSUES, columns=ISSUE_COLUMNS)
    keys = sampled_keys(tables, ctx.cfg)
    frame = issues.to_pandas()
    if keys is not None:
        frame = frame[[(r, n) in keys for r, n in zip(frame["repository"], frame["number"])]]
    return frame.reset_index(drop=True)


def run_profile(ctx: Context) -> dict[str, Any]:
    """Measure the data-profile checks of the issues in scope into ``gold_profile`` (this run's rows)."""
    reasons = ctx.lake.arrow.read(SILVER_EXCLUDED, columns=["reason"]).column("reason").to_pylist()
    excluded = pd.Series(reasons, dtype=object).value_counts().to_dict() if reasons else {}
    silver_total = ctx.lake.arrow.read(SILVER_ISSUES, columns=["number"]).num_rows
    return _store(
        ctx,
        profile_checks(in_scope(ctx), {str(k): int(v) for k, v in excluded.items()}, ctx.cfg.profile, silver_total),
        "data profile",
    )


def run_drift(ctx: Context) -> dict[str, Any]:
    """Measure embedding drift between the first and last periods, overall and per framework, into ``gold_profile``."""
    from issuerisk.vectors import load_current_vectors

    tables = ctx.lake.arrow
    keys, vectors = load_current_vectors(tables, ctx.cfg)
    issues = tables.read(SILVER_ISSUES, columns=["repository", "number", "framework", "created_at"]).to_pandas()
    frame = keys.select(["repository", "number"]).to_pandas().merge(issues, on=["repository", "number"], how="left")
    checks: list[Check] = []
    for scope in ["all", *sorted(frame["framework"].dropna().unique())]:
        mask = np.ones(len(frame), bool) if scope == "all" else (frame["framework"] == scope).to_numpy()
        checks += drift_checks(
            frame.loc[mask, "created_at"].reset_index(drop=True),
            vectors[mask],
            scope,
            ctx.cfg.profile,
            ctx.cfg.project.seed,
        )
    return _store(ctx, checks, "embedding drift")


PROFILE = Stage(
    "profile",
    "Data profile before clustering (imbalance, bodies, labels, open share, exclusions, quarters) into gold_profile, "
    "with warnings",
    run_profile,
    reads=(SILVER_ISSUES.name, SILVER_EXCLUDED.name),
    writes=(GOLD_PROFILE.name,),
    sections=("profile",),
)
DRIFT = Stage(
    "drift",
    "Embedding drift between the first and last periods (centroid shift, MMD) into gold_profile, with warnings",
    run_drift,
    reads=(GOLD_EMBEDDINGS.name, SILVER_ISSUES.name, SILVER_SUMMARIES.name, SILVER_PROJECT_TERMS.name),
    writes=(GOLD_PROFILE.name,),
    sections=("profile",),
)
