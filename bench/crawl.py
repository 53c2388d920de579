"""Crawl SYNTHETIC issues from the local fake GitHub and print the crawler's throughput and CPU cost.

Usage: ``.venv/bin/python -m bench.crawl [--repos 50 --issues 1000]``. The fake
server runs in its own process, so this process's CPU time is the crawler's
alone (client, JSON, raw files, checkpoints); a one-repository warm-up crawl
first keeps import time out of the figures. It crawls at each ``--concurrency``
(default 1 and 4): at GitHub's pace (1.4 requests/s) requests rarely overlap, so
the single-worker row is the realistic CPU cost, while 4 workers racing the
local server on two cores add thread contention that a real crawl does not see.
The last column scales that cost to
GitHub's real budget of 5,000 requests/hour/token (100 issues per page) and adds
the checkpoint commits, which happen per ``github.checkpoint_every_s`` of wall
time rather than per page (their CPU is timed apart, on the crawl's checkpoints).
The fake server speaks plain HTTP: TLS to the real GitHub adds its decryption.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GITHUB_REQUESTS_PER_S = 5000 / 3600
COMMITS = 5


def measure(url: str, warehouse: str, repos: list[str], concurrency: int) -> list:
    """One crawl of ``repos`` at ``concurrency`` into a fresh warehouse: a row of the table."""
    from issuerisk.conf import load_config
    from issuerisk.context import Context
    from issuerisk.github import crawl
    from issuerisk.lakehouse import ArrowTables
    from issuerisk.ledger import Run

    cfg = load_config(environ={"ISSUERISK_WAREHOUSE": warehouse, "ISSUERISK_GITHUB_API_URL": url}).updated(
        "github", concurrency=concurrency
    )
    warm = cfg.updated("project", database="warmup").updated("github", raw_dir="warmup")
    crawl.run(Context.open(warm, Run(warm, "bench"), progress=False), repos=repos[:1], no_ingest=True)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    result = crawl.run(Context.open(cfg, Run(cfg, "bench"), progress=False), repos=repos, no_ingest=True)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    store = crawl.CheckpointStore(ArrowTables(cfg))
    checkpoints = list(store.load().values())
    commit0 = time.process_time()
    for _ in range(COMMITS):
        crawl.commit(store, checkpoints, "bench")
    commit_cpu = (time.process_time() - commit0) / COMMITS
    objects, requests = result["objects"], result["requests"]
    every = cfg.github.checkpoint_every_s or 1.0
    share = cpu / requests * GITHUB_REQUESTS_PER_S + commit_cpu / every
    return [
        concurrency,
        objects,
        requests,
        round(wall, 2),
        round(requests / wall, 1),
        round(objects / wall),
        round(cpu, 2),
        round(cpu / objects * 1e6, 1),
        f"{round(commit_cpu * 1000, 1)} / {every:g} s",
        f"{share:.3%}",
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repos", type=int, default=50)
    parser.add_argument("--issues", type=int, default=1000, help="issues per repository")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args(argv)

    from issuerisk.display import table

    os.environ["GITHUB_TOKEN"] = "synthetic-bench-token"
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.github_server", "--repos", str(args.repos), "--issues", str(args.issues)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = server.stdout.readline().strip()
        repos = [f"synthetic-org/repo-{i}" for i in range(args.repos)]
        rows = []
        for concurrency in args.concurrency:
            with tempfile.TemporaryDirectory() as warehouse:
                rows.append(measure(url, warehouse, repos, concurrency))
    finally:
        server.stdin.close()
        server.wait()
    table(
        "crawl benchmark (local fake GitHub, SYNTHETIC data)",
        [
            "concurrency",
            "issues",
            "requests",
            "wall s",
            "requests/s",
            "issues/s",
            "crawler CPU s",
            "CPU ms / 1,000 issues",
            "checkpoint commit CPU ms",
            "core share at 5,000 req/h",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
