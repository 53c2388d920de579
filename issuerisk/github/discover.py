"""Stage ``discover``: find the GitHub repositories of each framework into ``bronze_repos``.

Each framework's queries (``github.framework_queries``: keyword and topic) are
searched with language, minimum stars and a creation-date range, sliced around
GitHub's 1,000-results cap (:mod:`issuerisk.github.search`). Repositories whose name
or description carries a ``filter.excluded_repo_keywords`` word (tutorials,
books, UIs, awesome lists, ...) or whose issues are disabled are kept with the
reason in ``excluded_reason`` and not crawled. Rows are MERGEd on repository;
a repository found for several frameworks, in one run or across runs, lists them all.
"""

from __future__ import annotations

import os
from datetime import date, datetime, timezone
from typing import Any

import pyarrow as pa

from issuerisk.constants import FRAMEWORKS
from issuerisk.context import Context
from issuerisk.display import progress, table
from issuerisk.github.client import GitHubClient
from issuerisk.github.exceptions import DiscoveryError
from issuerisk.github.search import Slice, search_repositories
from issuerisk.schemas.bronze import BRONZE_REPOS
from issuerisk.stage import Option, Stage
from issuerisk.text.repos import repo_keyword


def parse_day(value: str, name: str) -> date:
    """A ``YYYY-MM-DD`` option as a date.

    Raises:
        DiscoveryError: naming the option and the bad value.
    """
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise DiscoveryError(f"{name} must be a date YYYY-MM-DD such as 2018-01-01, got {value!r}") from None


def search_window(created_from: str, created_to: str | None, min_stars: int, today: date) -> Slice:
    """The whole search as one slice.

    Raises:
        DiscoveryError: a bad date, or a range that ends before it starts.
    """
    lo = parse_day(created_from, "created_from")
    hi = parse_day(created_to, "created_to") if created_to else today
    if hi < lo:
        raise DiscoveryError(f"created_to {hi} is before created_from {lo}; swap them or widen the range")
    if min_stars < 0:
        raise DiscoveryError(f"min_stars must be 0 or more, got {min_stars}")
    return Slice(lo, hi, min_stars)


def _timestamp(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def repo_rows(
    found: dict[str, tuple[dict[str, Any], set[str]]],
    known: dict[str, list[str]],
    keywords: list[str],
    run_id: str,
    now: datetime,
) -> list[dict[str, Any]]:
    """bronze_repos rows from search items, frameworks unioned with what the table already lists."""
    rows = []
    for name, (item, frameworks) in sorted(found.items()):
        reason = repo_keyword(name, item.get("description"), keywords)
        if reason is None and item.get("has_issues") is False:
            reason = "issues disabled"
        rows.append(
            {
                "repository": name,
                "frameworks": sorted(frameworks | set(known.get(name, []))),
                "stars": item.get("stargazers_count"),
                "description": item.get("description"),
                "language": item.get("language"),
                "topics": item.get("topics") or [],
                "has_issues": item.get("has_issues"),
                "created_at": _timestamp(item.get("created_at")),
                "pushed_at": _timestamp(item.get("pushed_at")),
                "excluded_reason": reason,
                "run_id": run_id,
                "discovered_at": now,
            }
        )
    return rows


def run(ctx: Context, framework: str = "all", client: GitHubClient | None = None) -> dict[str, Any]:
    """Search GitHub for each framework's repositories and MERGE them into bronze_repos. Returns counts.

    Args:
        framework: one of ``github.framework_queries`` or ``all``.
        client: an injected client (tests); by default one from ``cfg.github`` and ``GITHUB_TOKENS``.

    Raises:
        DiscoveryError: unknown framework or bad dates/stars.
        GitHubStatusError, RetriesExhausted: GitHub rejected or kept failing a search.
    """
    cfg, gh = ctx.cfg, ctx.cfg.github
    queries = gh.framework_queries
    if framework != "all" and framework not in queries:
        raise DiscoveryError(f"framework {framework!r} has no queries; use one of {sorted(queries)} or 'all'")
    own_client = client is None
    client = client or GitHubClient.from_config(gh, os.environ)
    today = datetime.fromtimestamp(client.clock(), timezone.utc).date()
    window = search_window(gh.created_from, gh.created_to, gh.min_stars, today)
    found: dict[str, tuple[dict[str, Any], set[str]]] = {}
    truncated: list[tuple[str, int]] = []
    slices = incomplete = 0
    bar = progress(None, "search results", "repo", ctx.progress)
    try:
        for fw in [framework] if framework != "all" else sorted(queries):
            for query in queries[fw]:
                result = search_repositories(client, query, window, gh.language, gh.per_page, on_page=bar.update)
                slices, incomplete = slices + result.slices, incomplete + result.incomplete
                truncated.extend(result.truncated)
                for name, item in result.items.items():
                    found.setdefault(name, (item, set()))[1].add(fw)
    finally:
        bar.close()
        if own_client:
            client.close()
    tables = ctx.lake.arrow
    existing = tables.read(BRONZE_REPOS, columns=["repository", "frameworks"]).to_pylist()
    known = {r["repository"]: r["frameworks"] for r in existing if r["repository"] in found}
    rows = repo_rows(found, known, cfg.filter.excluded_repo_keywords, ctx.run.run_id, datetime.now(timezone.utc))
    tables.merge(BRONZE_REPOS, pa.Table.from_pylist(rows, schema=BRONZE_REPOS.arrow))
    selected = sum(r["excluded_reason"] is None for r in rows)
    reasons: dict[str, int] = {}
    for r in rows:
        if r["excluded_reason"]:
            key = r["excluded_reason"]
            reasons[key] = reasons.get(key, 0) + 1
    by_framework = {fw: sum(fw in item[1] for item in found.values()) for fw in sorted(queries)}
    stats = client.stats.as_dict()
    table("discover", ["framework", "repositories"], sorted(by_framework.items()))
    table(
        "selection",
        ["found", "selected", "excluded", "slices", "requests", "truncated slices"],
        [[len(rows), selected, len(rows) - selected, slices, stats["requests"], len(truncated)]],
    )
    if reasons:
        table("excluded", ["reason", "repositories"], sorted(reasons.items(), key=lambda kv: -kv[1]))
    return {
        "found": len(rows),
        "selected": selected,
        "excluded": len(rows) - selected,
        "excluded_by_reason": reasons,
        "by_framework": by_framework,
        "slices": slices,
        "incomplete_pages": incomplete,
        "truncated": [{"query": q, "total_count": n} for q, n in truncated],
        **{k: v for k, v in stats.items() if k != "by_status"},
    }


STAGE = Stage(
    "discover",
    "Search GitHub for framework repositories into bronze_repos",
    run,
    reads=(BRONZE_REPOS.name,),
    writes=(BRONZE_REPOS.name,),
    options=(
        Option(
            ("--framework",),
            "framework whose repositories to search",
            argparse={"choices": (*FRAMEWORKS, "all"), "default": "all"},
        ),
        Option(("--min-stars",), "override github.min_stars", "github.min_stars", {"type": int}),
        Option(("--created-from",), "override github.created_from (YYYY-MM-DD)", "github.created_from"),
        Option(("--created-to",), "override github.created_to (YYYY-MM-DD)", "github.created_to"),
    ),
)
