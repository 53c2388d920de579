"""Crawl SYNTHETIC issues from the local fake GitHub and print the crawler's throughput and CPU cost.

Usage: ``.venv/bin/python -m bench.crawl [--repos 50 --issues 1000]``. The fake
server runs in its own process, so this process's CPU time is the crawler's
alone (client, JSON, raw files, checkpoints); a one-repository warm-up crawl
first keeps import time out of the figures. The last column scales that cost to
GitHub's real budget of 5,000 requests/hour/token (100 issues per page).
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repos", type=int, default=50)
    parser.add_argument("--issues", type=int, default=1000, help="issues per repository")
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args(argv)

    from conf import load_config
    from issuerisk.context import Context
    from issuerisk.display import table
    from jobs import crawl
    from jobs.runs import Run

    server = subprocess.Popen([sys.executable, "-m", "tests.fakes.github_server", "--repos", str(args.repos), "--issues", str(args.issues)],
                              cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        url = server.stdout.readline().strip()
        with tempfile.TemporaryDirectory() as warehouse:
            env = {"ISSUERISK_WAREHOUSE": warehouse, "ISSUERISK_GITHUB_API_URL": url}
            cfg = load_config(environ=env).updated("github", concurrency=args.concurrency)
            os.environ["GITHUB_TOKEN"] = "synthetic-bench-token"
            ctx = Context(cfg=cfg, run=Run(cfg, "bench"), progress=False)
            repos = [f"synthetic-org/repo-{i}" for i in range(args.repos)]
            warm = cfg.updated("project", database="warmup").updated("github", raw_dir="warmup")
            crawl.run(Context(cfg=warm, run=Run(warm, "bench"), progress=False), repos=repos[:1], no_ingest=True)
            cpu0, wall0 = time.process_time(), time.perf_counter()
            result = crawl.run(ctx, repos=repos, no_ingest=True)
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    finally:
        server.stdin.close()
        server.wait()
    objects, requests = result["objects"], result["requests"]
    cpu_per_1000 = cpu / objects * 1000
    cpu_per_request = cpu / requests
    table("crawl benchmark (local fake GitHub, SYNTHETIC data)",
          ["issues", "requests", "wall s", "requests/s", "issues/s", "crawler CPU s", "CPU ms / 1,000 issues", "core share at 5,000 req/h"],
          [[objects, requests, round(wall, 2), round(requests / wall, 1), round(objects / wall), round(cpu, 2),
            round(cpu_per_1000 * 1000, 1), f"{cpu_per_request * GITHUB_REQUESTS_PER_S:.3%}"]])


if __name__ == "__main__":
    main()
