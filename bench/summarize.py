"""Benchmark the summarizers: extractive issues per second, LLM requests per second against a local server.

Run: ``.venv/bin/python -m bench.summarize [--issues 60000] [--requests 2000] [--delay 0.2]``.
Texts are the real issues of ../shared/data/lai2024-ml-issues, cycled up to
``--issues``. The LLM path runs the real openai client and our retry logic
against tests.fakes.openai_server on 127.0.0.1 answering after ``--delay``
seconds, at ``summarize.llm.concurrency`` (or ``--concurrency``) in flight.
Targets: >= 2,000 issues/s extractive; >= 100 requests/s LLM.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import itertools
import json
import multiprocessing
import multiprocessing.synchronize
import time
from pathlib import Path
from types import SimpleNamespace

from issuerisk.conf.settings import LLMConfig, SummarizeConfig
from issuerisk.display import table
from issuerisk.summarizers import answer_all, make_summarizer
from issuerisk.summarizers.extractive import summarize

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "lai2024-ml-issues" / "issues"


def real_texts() -> list[tuple[str, str]]:
    texts = []
    for path in sorted(DATA.glob("*.jsonl.gz")):
        with gzip.open(path, "rt") as fh:
            texts.extend((o["title"], o.get("body") or "") for o in map(json.loads, fh))
    if not texts:
        raise SystemExit(f"no issues found under {DATA}")
    return texts


def bench_extractive(texts: list[tuple[str, str]], n: int, budget: int) -> tuple[float, float, float]:
    """Wall seconds, issues per wall second and issues per CPU second (the fair figure on a shared machine)."""
    start, cpu = time.perf_counter(), time.process_time()
    for title, body in itertools.islice(itertools.cycle(texts), n):
        summarize(title, body, budget)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    return seconds, n / seconds, n / cpu_seconds


def _serve(delay: float, urls: "multiprocessing.Queue", stop: "multiprocessing.synchronize.Event") -> None:
    from tests.fakes.openai_server import FakeOpenAIServer

    with FakeOpenAIServer(delay_s=delay) as server:
        urls.put(server.base_url)
        stop.wait()


def bench_llm(texts: list[tuple[str, str]], n: int, delay: float, concurrency: int) -> tuple[float, float, int]:
    """The server runs in its own process, as a real endpoint would, so it does not share our GIL."""
    from openai import AsyncOpenAI

    issues = [SimpleNamespace(title=t, body=b) for t, b in itertools.islice(itertools.cycle(texts), n)]
    urls: multiprocessing.Queue = multiprocessing.Queue()
    stop = multiprocessing.Event()
    process = multiprocessing.Process(target=_serve, args=(delay, urls, stop), daemon=True)
    process.start()
    try:
        base_url = urls.get(timeout=60)
        cfg = SummarizeConfig(summarizer="llm", llm=LLMConfig(model="bench", concurrency=concurrency))
        client = AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=30.0)
        summarizer = make_summarizer(cfg, client=client)
        start = time.perf_counter()
        tally = asyncio.run(answer_all(summarizer, summarizer.summarize, issues, lambda batch: None, 500))
        seconds = time.perf_counter() - start
    finally:
        stop.set()
        process.join(10)
    return seconds, n / seconds, sum(tally.failed.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issues", type=int, default=60_000)
    parser.add_argument("--requests", type=int, default=2_000)
    parser.add_argument("--delay", type=float, default=0.2, help="server answer latency in seconds")
    parser.add_argument("--concurrency", type=int, default=LLMConfig().concurrency)
    parser.add_argument("--budget", type=int, default=SummarizeConfig().token_budget)
    args = parser.parse_args()
    texts = real_texts()
    ex_s, ex_rate, ex_cpu_rate = bench_extractive(texts, args.issues, args.budget)
    llm_s, llm_rate, failed = bench_llm(texts, args.requests, args.delay, args.concurrency)
    table(
        "summarize benchmark",
        ("path", "items", "seconds", "per second", "target", "notes"),
        [
            (
                "extractive",
                args.issues,
                ex_s,
                ex_rate,
                ">= 2,000/s",
                f"{len(texts):,} real issues cycled, budget {args.budget}; {ex_cpu_rate:,.0f} per CPU second",
            ),
            (
                "llm (local server process)",
                args.requests,
                llm_s,
                llm_rate,
                ">= 100/s",
                f"{args.delay * 1000:.0f} ms answers, concurrency {args.concurrency}, {failed} failed",
            ),
        ],
    )


if __name__ == "__main__":
    main()
