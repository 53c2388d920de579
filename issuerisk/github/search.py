"""Repository search that never loses results past GitHub's 1,000-per-query cap.

GitHub's search API reports ``total_count`` for everything that matches but
serves only the first 1,000 items. A query whose count is above the cap is cut
into creation-date halves until every slice is under it; a single day still
above the cap is cut by star ranges; a slice that cannot be cut further (one day,
one star count) is fetched as far as GitHub allows and reported as truncated
with its count, never dropped silently.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from issuerisk.github.client import GitHubClient

log = logging.getLogger(__name__)

SEARCH_CAP = 1000


@dataclass(frozen=True)
class Slice:
    """One part of a search: repositories created in ``[created_from, created_to]`` with stars in ``[stars_min,
    stars_max]``."""

    created_from: date
    created_to: date
    stars_min: int
    stars_max: int | None = None

    def qualifiers(self) -> str:
        stars = f"stars:>={self.stars_min}" if self.stars_max is None else f"stars:{self.stars_min}..{self.stars_max}"
        return f"{stars} created:{self.created_from.isoformat()}..{self.created_to.isoformat()}"


def split(part: Slice, top_stars: int) -> list[Slice]:
    """Halve a slice over the cap: by creation date while it spans days, then by stars; [] when it cannot be cut.

    Args:
        top_stars: the most stars of any repository in the slice (the first item when sorted by stars),
            bounding an open star range so it can be halved.
    """
    if part.created_from < part.created_to:
        middle = part.created_from + (part.created_to - part.created_from) // 2
        return [
            Slice(part.created_from, middle, part.stars_min, part.stars_max),
            Slice(middle + timedelta(days=1), part.created_to, part.stars_min, part.stars_max),
        ]
    high = top_stars if part.stars_max is None else part.stars_max
    if part.stars_min >= high:
        return []
    middle = (part.stars_min + high) // 2
    return [
        Slice(part.created_from, part.created_to, part.stars_min, middle),
        Slice(part.created_from, part.created_to, middle + 1, high),
    ]


@dataclass
class SearchResult:
    """Items by full name plus what it took and what could not be had."""

    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: int = 0
    slices: int = 0
    incomplete: int = 0
    truncated: list[tuple[str, int]] = field(default_factory=list)


def search_repositories(
    client: GitHubClient,
    query: str,
    whole: Slice,
    language: str | None,
    per_page: int = 100,
    on_page: Callable[[int], None] | None = None,
) -> SearchResult:
    """Every repository matching ``query`` in ``whole``, slicing around the 1,000-result cap.

    Args:
        query: keywords and qualifiers (``"keras in:name,description,readme"``, ``"topic:keras"``).
        on_page: called with the number of items of each page fetched (progress).

    Raises:
        GitHubStatusError: GitHub rejected the query (422 for an invalid qualifier).
        RetriesExhausted: the search kept failing.
    """
    result = SearchResult()
    language_q = f" language:{language}" if language else ""
    pending = [whole]
    while pending:
        part = pending.pop()
        q = f"{query}{language_q} {part.qualifiers()}"
        params = {"q": q, "sort": "stars", "order": "desc", "per_page": per_page}
        first = client.get("/search/repositories", {**params, "page": 1}).data
        result.requests += 1
        total = int(first["total_count"])
        if total > SEARCH_CAP:
            top = first["items"][0]["stargazers_count"] if first["items"] else part.stars_min
            halves = split(part, top)
            if halves:
                pending.extend(reversed(halves))
                continue
            log.warning("search slice %r matches %d repositories; GitHub serves only %d of them", q, total, SEARCH_CAP)
            result.truncated.append((q, total))
        result.slices += 1
        pages = [first]
        for page in range(2, -(-min(total, SEARCH_CAP) // per_page) + 1):
            pages.append(client.get("/search/repositories", {**params, "page": page}).data)
            result.requests += 1
        for data in pages:
            result.incomplete += bool(data.get("incomplete_results"))
            for item in data["items"]:
                result.items[item["full_name"]] = item
            if on_page is not None:
                on_page(len(data["items"]))
    return result
