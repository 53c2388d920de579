"""Stage ``crawl``: fetch every issue of the selected repositories, resumably, then ingest them.

Repositories come from ``--repo`` or from ``bronze_repos`` (not excluded, issues
enabled, most stars first). Worker threads (``github.concurrency``) each crawl
one repository through the shared rate-limit-aware client; this thread collects
their per-page checkpoints and MERGEs them into ``crawl_checkpoints`` every
``github.checkpoint_every_s`` seconds. Killed at any point, a rerun continues
each repository from its last checkpointed page (truncating the raw file to
the checkpointed length), so raw files and bronze end with exactly the issues
an uninterrupted crawl gets. Unless ``no_ingest``, the raw JSON Lines files of
every fetched pass are MERGEd into ``bronze_issues`` by the ``ingest`` stage, run within the same run.
"""

from __future__ import annotations

import os
import queue
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from issuerisk.conf.secrets import env_secrets, redact
from issuerisk.constants import FRAMEWORKS
from issuerisk.context import Context
from issuerisk.display import progress, table
from issuerisk.github.checkpoints import DONE, FETCHED, IN_PROGRESS, Checkpoint, CheckpointStore
from issuerisk.github.client import GitHubClient
from issuerisk.github.exceptions import GitHubError
from issuerisk.github.issues import PageEvent, crawl_repository
from issuerisk.lakehouse import ArrowTables
from issuerisk.schemas.bronze import BRONZE_ISSUES, BRONZE_REJECTS, BRONZE_REPOS, CRAWL_CHECKPOINTS
from issuerisk.stage import Option, Stage


class CrawlError(ValueError):
    """The crawl was asked for something it cannot do (bad repository name, nothing to crawl)."""


def check_repos(repos: list[str]) -> list[str]:
    """Validated, de-duplicated ``owner/name`` strings.

    Raises:
        CrawlError: a name is not ``owner/name``.
    """
    bad = [r for r in repos if r.count("/") != 1 or not all(r.split("/"))]
    if bad:
        raise CrawlError(f"repositories must be OWNER/NAME such as keras-team/keras, got {bad}")
    return list(dict.fromkeys(repos))


def selected_repos(tables: ArrowTables, max_repos: int | None) -> dict[str, str | None]:
    """Repository -> framework tag (None when several) of bronze_repos rows selected for crawling, most stars first.

    Raises:
        CrawlError: bronze_repos is missing or selects nothing.
    """
    rows = tables.read(BRONZE_REPOS, columns=["repository", "frameworks", "stars", "excluded_reason"]).to_pylist()
    chosen = sorted(
        (r for r in rows if r["excluded_reason"] is None), key=lambda r: (-(r["stars"] or 0), r["repository"])
    )
    if not chosen:
        raise CrawlError("bronze_repos selects no repository; run `issuerisk discover` first or pass --repo OWNER/NAME")
    return {r["repository"]: r["frameworks"][0] if len(r["frameworks"]) == 1 else None for r in chosen[:max_repos]}


def run(
    ctx,
    repos: list[str] | None = None,
    framework: str | None = None,
    no_ingest: bool = False,
    max_repos: int | None = None,
    client: GitHubClient | None = None,
) -> dict[str, Any]:
    """Crawl the repositories' issues into raw JSON Lines and (unless ``no_ingest``) bronze_issues. Returns counts.

    Args:
        repos: ``owner/name`` to crawl; None selects from bronze_repos.
        framework: tag for ``repos`` when ingesting (None lets ingest infer it).
        max_repos: crawl at most this many repositories.
        client: an injected client (tests); by default one from ``cfg.github`` and ``GITHUB_TOKENS``.

    Raises:
        CrawlError: a bad repository name or framework, or nothing to crawl.
    """
    gh = ctx.cfg.github
    if framework is not None and framework not in FRAMEWORKS:
        raise CrawlError(f"framework {framework!r} is not one of {FRAMEWORKS}")
    if max_repos is not None and max_repos < 1:
        raise CrawlError(f"max_repos must be at least 1, got {max_repos}")
    targets = (
        {r: framework for r in check_repos(repos)[:max_repos]} if repos else selected_repos(ctx.lake.arrow, max_repos)
    )
    store = CheckpointStore(ctx.lake.arrow)
    before = store.load()
    own_client = client is None
    client = client or GitHubClient.from_config(gh, os.environ)
    try:
        finals, totals, failures = _crawl(ctx, client, store, {r: before.get(r) for r in targets})
    finally:
        if own_client:
            client.close()
    fetched = {r: cp for r, cp in finals.items() if cp.status == FETCHED}
    ingested: dict[str, Any] = {}
    if not no_ingest and fetched:
        ingested = _ingest(ctx, store, fetched, targets)
    statuses = Counter(cp.status for cp in finals.values())
    stats = client.stats.as_dict()
    result = {
        "repositories": len(targets),
        **{f"status_{k}": v for k, v in sorted(statuses.items())},
        "failed": len(failures),
        **{k: v for k, v in stats.items() if k != "by_status"},
        "http_status": stats["by_status"],
        **totals,
        "raw_files": len(fetched),
        "ingested_new_issues": ingested.get("new_issues", 0),
        "incomplete_repositories": ingested.get("incomplete_repositories", 0),
    }
    table(
        "crawl",
        [
            "repos",
            "requests",
            "304s",
            "retries",
            "rate waits",
            "secondary waits",
            "waited s",
            "objects",
            "PRs",
            "new",
            "updated",
        ],
        [
            [
                len(targets),
                stats["requests"],
                stats["not_modified"],
                stats["retries"],
                stats["rate_limit_waits"],
                stats["secondary_waits"],
                stats["wait_seconds"],
                totals["objects"],
                totals["pull_requests"],
                totals["new"],
                totals["updated"],
            ]
        ],
    )
    table("repositories by status", ["status", "repositories"], sorted(statuses.items()))
    if failures:
        table("failed (rerun `issuerisk crawl` to resume)", ["repository", "error"], sorted(failures.items()))
    return result


def commit(store: CheckpointStore, checkpoints: list[Checkpoint], run_id: str) -> None:
    """fsync the raw files the checkpoints point into, then MERGE the checkpoints.

    Syncing per commit rather than per page keeps a power loss from leaving a
    checkpoint that points past the end of its file, at one fsync per file per commit.
    """
    for path in {cp.raw_file for cp in checkpoints if cp.raw_file}:
        if os.path.exists(path):
            with open(path, "rb") as f:
                os.fsync(f.fileno())
    store.save(checkpoints, run_id)


def _crawl(
    ctx, client: GitHubClient, store: CheckpointStore, start: dict[str, Checkpoint | None]
) -> tuple[dict[str, Checkpoint], dict[str, int], dict[str, str]]:
    """Run the workers; MERGE their checkpoints every ``checkpoint_every_s``. Returns final checkpoints, totals,
    failures."""
    gh, run_id = ctx.cfg.github, ctx.run.run_id
    raw_dir = ctx.cfg.resolve_path(gh.raw_dir)
    events: queue.Queue[tuple[str, PageEvent | Checkpoint | BaseException]] = queue.Queue()
    latest: dict[str, Checkpoint] = {r: cp for r, cp in start.items() if cp is not None}
    pending: dict[str, Checkpoint] = {}
    totals = Counter(objects=0, pull_requests=0, new=0, updated=0, pages=0)
    failures: dict[str, str] = {}
    secrets = env_secrets(os.environ)
    bars = [
        progress(len(start), "repositories", "repo", ctx.progress),
        progress(None, "pages", "page", ctx.progress),
        progress(None, "issues", "issue", ctx.progress),
    ]

    def work(repo: str, checkpoint: Checkpoint | None) -> None:
        """Crawl one repository, queueing a PageEvent per page and then its final checkpoint or error."""
        try:
            events.put(
                (
                    repo,
                    crawl_repository(client, checkpoint, repo, raw_dir, gh.per_page, lambda e: events.put((repo, e))),
                )
            )
        except BaseException as exc:  # handed to the coordinating thread, which decides
            events.put((repo, exc))

    # The coordinating thread sleeps until a worker reports or a commit is due: no polling, so an
    # hours-long crawl of thousands of repositories costs nothing between pages.
    last_commit, running = time.monotonic(), len(start)
    with ThreadPoolExecutor(max_workers=gh.concurrency, thread_name_prefix="crawl") as pool:
        for repo, cp in start.items():
            pool.submit(work, repo, cp)
        while running:
            wait = max(0.0, last_commit + gh.checkpoint_every_s - time.monotonic()) if pending else None
            try:
                arrived = [events.get(timeout=wait)]
            except queue.Empty:
                arrived = []
            while arrived and not events.empty():  # a burst is committed together
                arrived.append(events.get_nowait())
            for repo, item in arrived:
                if isinstance(item, PageEvent):
                    pending[repo] = latest[repo] = item.checkpoint
                    totals.update(
                        objects=item.objects,
                        pull_requests=item.pull_requests,
                        new=item.new,
                        updated=item.updated,
                        pages=1,
                    )
                    if item.last_page:
                        bars[1].total = (bars[1].total or 0) + item.last_page
                    bars[1].update(1)
                    bars[2].update(item.objects)
                    continue
                running -= 1
                bars[0].update(1)
                if isinstance(item, Checkpoint):
                    pending[repo] = latest[repo] = item
                elif isinstance(item, GitHubError):
                    failures[repo] = redact(str(item), secrets)
                    previous = latest.get(repo) or Checkpoint(repo, IN_PROGRESS)
                    pending[repo] = latest[repo] = previous.but(error=failures[repo])
                else:
                    raise item
            if pending and (not running or time.monotonic() - last_commit >= gh.checkpoint_every_s):
                commit(store, list(pending.values()), run_id)
                pending.clear()
                last_commit = time.monotonic()
    commit(store, list(pending.values()), run_id)
    for bar in bars:
        bar.close()
    return latest, dict(totals), failures


def _ingest(
    ctx: Context, store: CheckpointStore, fetched: dict[str, Checkpoint], targets: dict[str, str | None]
) -> dict[str, Any]:
    """MERGE fetched raw files into bronze_issues (one ingest per framework tag, through the runner), then mark done the
    repositories whose file landed whole; the others stay ``fetched`` with why, so the next crawl ingests them again."""
    groups: dict[str | None, list[str]] = {}
    for repo, cp in sorted(fetched.items()):
        if cp.raw_file and os.path.exists(cp.raw_file):
            groups.setdefault(targets.get(repo), []).append(cp.raw_file)
    result: Counter[str] = Counter()
    incomplete: dict[str, str] = {}
    for tag, paths in groups.items():
        counts = ctx.invoke("ingest", paths=paths, framework=tag)
        result.update({k: v for k, v in counts.items() if isinstance(v, int)})
        incomplete.update(counts.get("incomplete_files") or {})
    marked = []
    for cp in fetched.values():
        why = incomplete.get(os.path.abspath(cp.raw_file)) if cp.raw_file else None
        # a file that did not land whole stays fetched: the next crawl ingests it again (after the limit is raised)
        marked.append(
            cp.but(status=DONE)
            if why is None
            else cp.but(
                error=f"ingest kept only part of {cp.raw_file} ({why}); raise ingest.max_file_bytes or repair the "
                "file, then crawl "
                "again: it is ingested again, and the repository is done only when all of it landed"
            )
        )
    store.save(marked, ctx.run.run_id)
    return {**dict(result), "incomplete_repositories": sum(cp.status != DONE for cp in marked)}


STAGE = Stage(
    "crawl",
    "Crawl all issues of selected repositories, resumable, then ingest them",
    run,
    reads=(CRAWL_CHECKPOINTS.name, BRONZE_REPOS.name),
    writes=(CRAWL_CHECKPOINTS.name, BRONZE_ISSUES.name, BRONZE_REJECTS.name),
    options=(
        Option(
            ("--repo",),
            "crawl this repository (repeatable); default: selected bronze_repos",
            argparse={"action": "append", "dest": "repos", "metavar": "OWNER/NAME"},
        ),
        Option(("--framework",), "tag for --repo repositories", argparse={"choices": FRAMEWORKS}),
        Option(
            ("--no-ingest",),
            "only fetch raw JSON Lines, do not MERGE into bronze_issues",
            argparse={"action": "store_true"},
        ),
        Option(("--max-repos",), "crawl at most this many repositories", argparse={"type": int}),
    ),
)
