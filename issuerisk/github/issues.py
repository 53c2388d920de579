"""Crawl one repository's issues page by page into a JSON Lines file, resumable at any page.

A pass lists ``/repos/{owner}/{repo}/issues?state=all&sort=created&direction=asc``
(ascending creation order keeps pages stable while new issues arrive), with
``since`` on incremental passes. After each page the objects are appended to
the pass's raw file and a checkpoint with the next page's URL and the file's
length is emitted (the crawl fsyncs the file before it commits the
checkpoint); a resume truncates the file to that length and continues from
that URL, so every object is written exactly once. A pass's file is named
after the pass (its ``since``) and its first write truncates it, so pages that
a killed run wrote but never checkpointed are not kept twice.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from issuerisk.github.checkpoints import DONE, FETCHED, GONE_STATUSES, IN_PROGRESS, Checkpoint
from issuerisk.github.client import GitHubClient
from issuerisk.github.exceptions import GitHubStatusError


@dataclass(frozen=True)
class PageEvent:
    """One page written: counts for progress and totals, and the checkpoint after it."""

    checkpoint: Checkpoint
    objects: int
    pull_requests: int
    new: int
    updated: int
    last_page: int | None


def page_lines(items: list[dict[str, Any]], since: str | None) -> tuple[bytes, int, int, int]:
    """JSON Lines of a page's objects (orjson, one compact object per line) and counts (pull requests, new, updated).

    An object created before the pass's ``since`` existed at the last pass, so it is an update.
    """
    prs = new = 0
    for item in items:
        prs += "pull_request" in item
        new += since is None or str(item.get("created_at") or "") >= since
    lines = [orjson.dumps(i) for i in items]
    return b"\n".join(lines) + b"\n" if lines else b"", prs, new, len(items) - new


def raw_path(raw_dir: str, repository: str, since: str | None) -> str:
    """``<raw_dir>/<owner>__<name>/since-<since>.jsonl`` (``all.jsonl`` for a full pass): one file per pass.

    The name depends only on the pass, so a rerun after a kill writes the same file
    (see :func:`crawl_repository`).
    """
    name = f"since-{since.replace(':', '')}.jsonl" if since else "all.jsonl"
    return str(Path(raw_dir) / repository.replace("/", "__") / name)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def start(
    client: GitHubClient, checkpoint: Checkpoint | None, repository: str, per_page: int
) -> tuple[Checkpoint, str, bool]:
    """The checkpoint, URL and whether it is the first page of a new pass, for crawling ``repository`` now.

    In-progress checkpoints with a next page continue there; anything else starts
    a pass with the stored ``since`` (none for a repository never crawled).
    """
    if checkpoint is not None and checkpoint.status == IN_PROGRESS and checkpoint.next_url:
        return checkpoint, checkpoint.next_url, False
    since = checkpoint.since if checkpoint is not None and checkpoint.status in (DONE, IN_PROGRESS) else None
    etag = checkpoint.etag if checkpoint is not None and checkpoint.status == DONE else None
    url = client.url(
        f"/repos/{repository}/issues",
        {"state": "all", "sort": "created", "direction": "asc", "per_page": per_page, "since": since},
    )
    return Checkpoint(repository, IN_PROGRESS, since=since, etag=etag), url, True


def _prepare_file(checkpoint: Checkpoint) -> bool:
    """Truncate a resumed pass's raw file to its checkpointed length; False when the file is gone and the pass must
    restart."""
    if not checkpoint.raw_file:
        return checkpoint.raw_offset == 0
    if not os.path.exists(checkpoint.raw_file):
        return checkpoint.raw_offset == 0
    with open(checkpoint.raw_file, "r+b") as f:
        f.truncate(checkpoint.raw_offset)
    return True


def crawl_repository(
    client: GitHubClient,
    checkpoint: Checkpoint | None,
    repository: str,
    raw_dir: str,
    per_page: int,
    emit: Callable[[PageEvent], None],
) -> Checkpoint:
    """Fetch every page of a pass (or the rest of an interrupted one), emitting a checkpoint per page.

    Returns the final checkpoint: ``fetched`` (objects await ingest), ``done``
    (304 on the stored ETag of an empty first page, or nothing new), or ``gone``/``issues_disabled``/``blocked``.

    Raises:
        RetriesExhausted: GitHub kept failing; the last emitted checkpoint resumes the pass.
        GitHubStatusError: an unexpected 4xx (e.g. 403 without a rate limit).
    """
    if checkpoint is not None and checkpoint.status == FETCHED:
        return checkpoint
    cp, url, first = start(client, checkpoint, repository, per_page)
    if not first and not _prepare_file(cp):
        cp, url, first = start(client, cp.but(next_url=None), repository, per_page)
    while True:
        try:
            response = client.get(url, etag=cp.etag if first else None, cache=False)
        except GitHubStatusError as exc:
            if exc.status not in GONE_STATUSES:
                raise
            return Checkpoint(
                repository, GONE_STATUSES[exc.status], since=cp.since, error=f"{exc.status}: {exc.message}"
            )
        if response.not_modified and response.data is None:
            return cp.but(status=DONE, next_url=None, error=None)
        if first:
            cp = cp.but(pass_started=_iso(response.date or client.clock()), etag=response.etag)
        data, prs, new, updated = page_lines(response.data, cp.since)
        if data:
            path = cp.raw_file or raw_path(raw_dir, repository, cp.since)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            # A pass's first write truncates: whatever a killed run wrote there was never checkpointed.
            # The file is synced before its checkpoint is committed (issuerisk.github.crawl.commit).
            with open(path, "ab" if cp.raw_file else "wb") as f:
                f.write(data)
                offset = f.tell()
            cp = cp.but(raw_file=path, raw_offset=offset)
        next_url = response.links.get("next")
        cp = cp.but(next_url=next_url, issues_fetched=cp.issues_fetched + len(response.data), error=None)
        if next_url is None:
            cp = _finish(cp)
        last = response.links.get("last")
        emit(
            PageEvent(
                cp,
                len(response.data),
                prs,
                new,
                updated,
                int(last.rsplit("page=", 1)[1].split("&")[0]) if first and last and "page=" in last else None,
            )
        )
        if next_url is None:
            return cp
        url, first = next_url, False


def _finish(cp: Checkpoint) -> Checkpoint:
    """End of a pass: the next pass starts where this one started, keeping this first page's ETag only when nothing came
    back."""
    if cp.issues_fetched:
        return cp.but(status=FETCHED, since=cp.pass_started, etag=None)
    return cp.but(status=DONE, etag=cp.etag)
