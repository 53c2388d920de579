"""Benchmark: ingest + filter of N SYNTHETIC GitHub issue objects (default 100,000).

    .venv/bin/python -m bench.ingest [--issues 100000] [--files 200]

Bodies are synthetic but shaped like the real corpus (lognormal lengths with the
real data's median of about 700 characters; prose, code blocks and tracebacks;
5% pull requests, 1% bots, 2% duplicates, a few non-English texts). Prints
issues per second for each step and the peak memory of the driver and the JVM, then
the same two steps again in the same JVM (an idempotent rerun: every issue is in bronze
already and none is newer, so the MERGE rewrites and commits nothing; no first-use compilation).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import resource
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.github_objects import issue

WORDS = (
    "model training loss gradient tensor layer batch epoch optimizer dataset loader checkpoint cuda device memory "
    "shape mismatch error version install import export inference accuracy weights config backend kernel"
).split()
TRACE = (
    'Traceback (most recent call last):\n  File "train.py", line {n}, in <module>\n    model.fit(x, y)\n'
    '  File "/usr/lib/python3.9/site-packages/torch/nn/modules/module.py", line 1102, in _call_impl\n'
    "RuntimeError: CUDA out of memory. Tried to allocate {n} MiB"
)
OTHER = (
    "模型训练时出现错误，请问应该怎么解决这个问题",
    "Der Fehler tritt beim Training des Modells auf und ich weiß nicht warum",
)


def synthetic_body(rng: random.Random, n: int, chars: int | None = None) -> str:
    """Prose, code blocks and tracebacks of about ``chars`` characters (None: lognormal, median ~700, at most
    20,000)."""
    target = int(min(20000, rng.lognormvariate(6.55, 1.1))) if chars is None else chars
    parts, size = [], 0
    while size < target:
        kind = rng.random()
        if kind < 0.7:
            part = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 30))).capitalize() + "."
        elif kind < 0.85:
            part = "```python\n" + "\n".join(f"x{i} = layer_{i}(x{i - 1})" for i in range(rng.randint(2, 8))) + "\n```"
        else:
            part = "```\n" + TRACE.format(n=n % 997) + "\n```"
        parts.append(part)
        size += len(part)
    return "\n\n".join(parts)


@dataclass(frozen=True)
class Draw:
    """What one synthetic issue is: its state and kind, its body length (None: lognormal) and labels."""

    closed: bool
    other_language: bool = False
    pull_request: bool = False
    bot: bool = False
    duplicate: bool = False
    body_chars: int | None = None
    labels: tuple[str, ...] = ()


def default_draw(rng: random.Random) -> Draw:
    """1% non-English, 5% pull requests, 1% bots, 2% written twice (duplicates); 70% closed."""
    r = rng.random()
    return Draw(
        closed=r > 0.3,
        other_language=r < 0.01,
        pull_request=0.01 <= r < 0.06,
        bot=0.06 <= r < 0.07,
        duplicate=0.07 <= r < 0.09,
    )


@dataclass(frozen=True)
class SyntheticRepo:
    """A repository to generate: its name, how many issues, and how each issue is drawn."""

    name: str
    issues: int
    draw: Callable[[random.Random], Draw] = default_draw


def generate(folder: Path, issues: int, files: int, seed: int = 0, repos: list[SyntheticRepo] | None = None) -> None:
    """Write ``issues`` SYNTHETIC issue objects (duplicates counted) as gzip JSON Lines into ``folder``.

    Args:
        repos: the repositories, spread in order over at most ``files`` files; None gives
            ``files`` equal repositories drawn by :func:`default_draw`, one per file.
    """
    rng = random.Random(seed)
    repos = repos or [SyntheticRepo(f"synthetic-org/project-{f:04d}", -(-issues // files)) for f in range(files)]
    n_files = min(files, len(repos))
    n = 0
    for f in range(n_files):
        with gzip.open(folder / f"{f:04d}.jsonl.gz", "wt", compresslevel=1) as fh:
            for repo in repos[f * len(repos) // n_files : (f + 1) * len(repos) // n_files]:
                for k in range(1, repo.issues + 1):
                    if n >= issues:
                        break
                    n += 1
                    draw = repo.draw(rng)
                    title = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 10)))
                    body = rng.choice(OTHER) * 3 if draw.other_language else synthetic_body(rng, n, draw.body_chars)
                    obj = issue(
                        repo.name,
                        k,
                        title,
                        body,
                        state="closed" if draw.closed else "open",
                        created="2021-03-01T10:00:00Z",
                        closed="2021-03-0%dT10:00:00Z" % rng.randint(2, 9) if draw.closed else None,
                        labels=draw.labels,
                        pull_request=draw.pull_request,
                        login="ci-bot[bot]" if draw.bot else f"user{k}",
                    )
                    fh.write(json.dumps(obj) + "\n")
                    if draw.duplicate:
                        n += 1
                        fh.write(json.dumps({**obj, "number": k + 100000, "id": obj["id"] + 1}) + "\n")


def peak_mb(spark) -> tuple[float, float]:
    """Peak resident memory (MB) of this driver process and of Spark's JVM (its VmHWM while it still runs)."""
    driver = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    proc = getattr(spark.sparkContext._gateway, "proc", None)
    jvm = float("nan")
    if proc is not None:
        for pid in [proc.pid, *_children(proc.pid)]:
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            if "java" in Path(f"/proc/{pid}/comm").read_text() and "VmHWM" in status:
                jvm = int(status.split("VmHWM:")[1].split()[0]) / 1024
    return driver, jvm


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def open_context(warehouse: Path) -> Any:
    """A Context on a fresh warehouse folder (Spark starts on first use), as the CLI builds one."""
    from issuerisk.conf import load_config
    from issuerisk.context import Context
    from issuerisk.ledger import Run

    cfg = load_config(environ={**os.environ, "ISSUERISK_WAREHOUSE": str(warehouse)})
    return Context.open(cfg, Run(cfg, "bench"), progress=False)


def ingest_and_filter(ctx: Any, data: Path) -> dict[str, Any]:
    """Start Spark and create the tables, then run the ingest and filter stages on ``data``, each timed.

    Returns:
        seconds of ``start``, ``ingest`` and ``filter``, and what the two stages returned (``ingested``, ``filtered``).
    """
    from issuerisk.jobs import filter as silver_filter
    from issuerisk.jobs import ingest

    t0 = time.perf_counter()
    ctx.spark  # noqa: B018  (start Spark and create the tables outside the timed steps)
    start = time.perf_counter() - t0
    t0 = time.perf_counter()
    got = ingest.run(ctx, [str(data)])
    t_ingest = time.perf_counter() - t0
    t0 = time.perf_counter()
    kept = silver_filter.run(ctx)
    return {"start": start, "ingest": t_ingest, "filter": time.perf_counter() - t0, "ingested": got, "filtered": kept}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issues", type=int, default=100_000)
    parser.add_argument("--files", type=int, default=200)
    args = parser.parse_args()

    from issuerisk.display import table
    from issuerisk.jobs import filter as silver_filter
    from issuerisk.jobs import ingest

    with tempfile.TemporaryDirectory() as tmp:
        data, wh = Path(tmp) / "data", Path(tmp) / "wh"
        data.mkdir()
        t0 = time.perf_counter()
        generate(data, args.issues, args.files)
        gen = time.perf_counter() - t0
        ctx = open_context(wh)
        first = ingest_and_filter(ctx, data)
        start, t_ingest, t_filter, got, kept = (first[k] for k in ("start", "ingest", "filter", "ingested", "filtered"))
        # The same files again in the same JVM: every issue matches one in bronze and none is newer, and
        # neither step pays the JVM's first-use compilation (the target is measured cold, above).
        version = ctx.lake.spark.version("bronze_issues")
        t0 = time.perf_counter()
        again = ingest.run(ctx, [str(data)])
        t_ingest2 = time.perf_counter() - t0
        version_after = ctx.lake.spark.version("bronze_issues")
        t0 = time.perf_counter()
        silver_filter.run(ctx)
        t_filter2 = time.perf_counter() - t0
        py_mb, jvm_mb = peak_mb(ctx.spark)
        n = got["records"]
        table(
            f"bench.ingest: {n:,} synthetic issues, {args.files} files, {os.cpu_count()} cores",
            ["step", "seconds", "issues/s", "note"],
            [
                ["generate", round(gen, 1), round(n / gen), "not timed in the target"],
                ["spark start + tables", round(start, 1), "", "excluded from the target"],
                ["ingest (bronze MERGE)", round(t_ingest, 1), round(n / t_ingest), f"{got['accepted']:,} accepted"],
                ["filter (silver)", round(t_filter, 1), round(n / t_filter), f"{kept['silver']:,} kept"],
                [
                    "ingest + filter",
                    round(t_ingest + t_filter, 1),
                    round(n / (t_ingest + t_filter)),
                    "target < 60 s for 100,000",
                ],
                [
                    "rerun: ingest (MERGE)",
                    round(t_ingest2, 1),
                    round(n / t_ingest2),
                    f"{again['new_issues']:,} new, bronze v{version} -> v{version_after}",
                ],
                ["rerun: filter", round(t_filter2, 1), round(n / t_filter2), "same JVM, warm"],
                ["rerun: ingest + filter", round(t_ingest2 + t_filter2, 1), round(n / (t_ingest2 + t_filter2)), ""],
                ["peak RSS driver / JVM (MB)", round(py_mb), round(jvm_mb), ""],
            ],
        )


if __name__ == "__main__":
    main()
