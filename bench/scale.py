"""Benchmark: the cost curve of ingest + filter on SYNTHETIC issues shaped by the real corpus, at 10k, 100k and 1M.

    .venv/bin/python -m bench.scale [--sizes 10000,100000,1000000] [--seed 0] [--embed-cluster]

The shape comes from the real corpus (../shared/data/lai2024-ml-issues, 40,933
issues of 428 repositories): each synthetic repository resamples a real one
(seeded, with replacement, until the size is reached), so repository sizes follow
the real (Zipf-like) distribution, and each of its issues resamples one of that
repository's real issues for its body length, labels, open/closed state, bot
author and the filter's own language and duplicate verdicts on it (a
non-English repository stays one). The texts are bench.ingest's synthetic prose,
code and tracebacks at those lengths; the corpus holds no pull requests (its
authors removed them), so ``--pull-requests`` (default 5 %, bench.ingest's share)
adds them. One file per repository, as in the corpus (where random duplicates end generation
before the last repository, its empty file is an ``empty_file`` reject).

Each size is generated here, then ingested and filtered by the project's stages
(bench.ingest.ingest_and_filter) in a fresh Python process with a fresh
local Spark (cold JVM, new warehouse); its data and tables are deleted after.
Prints per size the wall times, the peak RSS of that driver process and of its
Spark JVM, then the log-log least-squares slope of time against N.

``--embed-cluster`` adds the CPU figures for 10k and 40k issues: the configured
model's embedding rate on real extractive summaries (measured on ``--embed-texts``
of them, extrapolated), and the CPU cluster backend on planted 384-d vectors
(one seeded member run measured per size in a fresh process; the default
consensus extrapolated from it).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.ingest import Draw, SyntheticRepo, generate
from bench.stability import REAL_ISSUES, read_repository

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
EMBED_SIZES = (10_000, 40_000)


def real_repositories(folder: Path = REAL_ISSUES) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """(owner/name, its issue objects) per file of the real corpus, in file order (it holds no pull requests)."""
    files = sorted(folder.glob("*.jsonl.gz"))
    if not files:
        raise FileNotFoundError(
            f"no *.jsonl.gz under {folder}; the real corpus lives in ../shared/data/lai2024-ml-issues"
        )
    for file in files:
        yield read_repository(file)


@dataclass(frozen=True)
class CorpusProfile:
    """Per real repository its issues' traits, as :class:`bench.ingest.Draw` (pull requests never set)."""

    repositories: tuple[tuple[str, tuple[Draw, ...]], ...]

    def summary(self) -> list[list[Any]]:
        """The shape's figures, for the printed table."""
        draws = [d for _, ds in self.repositories for d in ds]
        n = len(draws)
        sizes = np.array([len(ds) for _, ds in self.repositories])
        lengths = np.array([d.body_chars for d in draws])
        other_repos = sum(all(d.other_language for d in ds) for _, ds in self.repositories)
        return [
            ["issues / repositories", f"{n:,} / {len(sizes)}", ""],
            [
                "issues per repository: median / p90 / max",
                f"{np.median(sizes):.0f} / {np.percentile(sizes, 90):.0f} / {sizes.max()}",
                "resampled",
            ],
            [
                "body chars: median / p90 / p99 / empty",
                f"{np.median(lengths):.0f} / {np.percentile(lengths, 90):.0f} / "
                f"{np.percentile(lengths, 99):.0f} / {np.mean(lengths == 0):.1%}",
                "resampled",
            ],
            [
                "labelled issues / distinct labels",
                f"{np.mean([bool(d.labels) for d in draws]):.1%} / {len({x for d in draws for x in d.labels})}",
                "resampled",
            ],
            ["closed", f"{np.mean([d.closed for d in draws]):.1%}", "resampled"],
            [
                "non-English (filter's verdict)",
                f"{np.mean([d.other_language for d in draws]):.2%} ({other_repos} whole repositories)",
                "resampled",
            ],
            ["duplicates (filter's verdict)", f"{np.mean([d.duplicate for d in draws]):.2%}", "each written twice"],
            ["bot authors", f"{np.mean([d.bot for d in draws]):.3%}", "resampled"],
        ]


def corpus_profile(folder: Path = REAL_ISSUES) -> CorpusProfile:
    """Read the real corpus and judge it with the filter's own language and duplicate rules (configured defaults).

    Raises:
        FileNotFoundError: the corpus is missing.
    """
    from issuerisk.conf import load_config
    from issuerisk.jobs.filter import judge_texts

    rules = load_config().filter
    bot = re.compile("|".join(f"(?i:{p})" for p in rules.bot_login_patterns))
    repositories = []
    for name, issues in real_repositories(folder):
        _, _, reasons, _ = judge_texts(
            [i["number"] for i in issues], [i["title"] or "" for i in issues], [i.get("body") for i in issues], rules
        )
        draws = []
        for obj, reason in zip(issues, reasons):
            user = obj.get("user") or {}
            draws.append(
                Draw(
                    closed=obj.get("state") == "closed",
                    other_language=reason in ("non_english", "non_english_repository"),
                    bot=user.get("type") == "Bot" or bool(bot.search(user.get("login") or "")),
                    duplicate=reason == "duplicate",
                    body_chars=len(obj.get("body") or ""),
                    labels=tuple(label["name"] for label in obj.get("labels") or ()),
                )
            )
        repositories.append((name, tuple(draws)))
    return CorpusProfile(tuple(repositories))


def _resampler(draws: tuple[Draw, ...], pull_request_share: float) -> Callable[[random.Random], Draw]:
    """A draw of one of ``draws``, made a pull request with probability ``pull_request_share``."""

    def draw(rng: random.Random) -> Draw:
        picked = draws[rng.randrange(len(draws))]
        return replace(picked, pull_request=True) if rng.random() < pull_request_share else picked

    return draw


def shaped_repos(profile: CorpusProfile, issues: int, seed: int, pull_request_share: float) -> list[SyntheticRepo]:
    """Real repositories resampled (seeded, with replacement) until their issues and duplicates reach ``issues``
    records; SYNTHETIC owners. The last one is cut where generation stops."""
    rng = random.Random(seed)
    repos: list[SyntheticRepo] = []
    total = 0
    while total < issues:
        name, draws = profile.repositories[rng.randrange(len(profile.repositories))]
        repos.append(
            SyntheticRepo(
                f"synthetic-{len(repos):05d}/{name.split('/', 1)[1]}", len(draws), _resampler(draws, pull_request_share)
            )
        )
        total += len(draws) + sum(d.duplicate for d in draws)
    return repos


def folder_mb(path: Path) -> float:
    """Megabytes of the files under ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def _worker(data: str, warehouse: str, out: str) -> None:
    """Ingest + filter ``data`` in this fresh process (``--worker``); write the timings and peak RSS to ``out``."""
    from bench.ingest import ingest_and_filter, open_context, peak_mb

    ctx = open_context(Path(warehouse))
    got = ingest_and_filter(ctx, Path(data))
    driver, jvm = peak_mb(ctx.spark)
    Path(out).write_text(json.dumps({**got, "driver_mb": driver, "jvm_mb": jvm}))


def _fresh(args: list[str], log: Path) -> None:
    """``python -m bench.scale ARGS`` in a fresh process, its output to ``log``.

    Raises:
        RuntimeError: it failed (the log's tail is in the message).
    """
    with open(log, "w") as fh:
        code = subprocess.run(
            [sys.executable, "-m", "bench.scale", *args], cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, check=False
        ).returncode
    if code:
        raise RuntimeError(
            f"bench.scale {' '.join(args)} exited {code}; the end of its log:\n{log.read_text()[-4000:]}"
        )


def measure(
    profile: CorpusProfile, issues: int, seed: int, pull_request_share: float, tmp_root: str | None
) -> dict[str, Any]:
    """Generate ``issues`` shaped issues, ingest + filter them in a fresh process, delete everything; return the
    figures."""
    with tempfile.TemporaryDirectory(prefix=f"scale-{issues}-", dir=tmp_root) as tmp:
        data, wh, out = Path(tmp) / "data", Path(tmp) / "wh", Path(tmp) / "result.json"
        data.mkdir()
        repos = shaped_repos(profile, issues, seed, pull_request_share)
        t0 = time.perf_counter()
        generate(data, issues, len(repos), seed, repos)
        generated = time.perf_counter() - t0
        print(
            f"  {issues:,}: generated {len(repos):,} repositories ({folder_mb(data):,.0f} MB gzip) in {generated:.0f} "
            "s; ingest + filter ...",
            flush=True,
        )
        _fresh(["--worker", str(data), str(wh), str(out)], Path(tmp) / "worker.log")
        result = json.loads(out.read_text())
        print(
            f"  {issues:,}: ingest {result['ingest']:.0f} s, filter {result['filter']:.0f} s, peak RSS driver "
            f"{result['driver_mb']:.0f} MB,"
            f" JVM {result['jvm_mb']:.0f} MB",
            flush=True,
        )
        return {
            **result,
            "issues": issues,
            "repos": len(repos),
            "generate": generated,
            "data_mb": folder_mb(data),
            "lake_mb": folder_mb(wh),
        }


def slope(sizes: list[float], values: list[float]) -> float:
    """Least-squares slope of log(values) against log(sizes): the exponent b of value ~ N^b."""
    return float(np.polyfit(np.log(sizes), np.log(values), 1)[0])


def real_summaries(n: int, seed: int = 0) -> list[str]:
    """``n`` real issues (a seeded pick, all when fewer) as the embed stage sees them: the configured extractive
    summary, masked of the repository's own name words (not of words learned from the corpus)."""
    from issuerisk.conf import load_config
    from issuerisk.summarizers import extractive
    from issuerisk.text.masking import mask, repository_words

    cfg = load_config().summarize
    issues = [(name, obj) for name, objs in real_repositories() for obj in objs]
    picked = sorted(np.random.default_rng(seed).choice(len(issues), size=min(n, len(issues)), replace=False))
    return [
        mask(
            extractive.summarize(obj["title"] or "", obj.get("body"), cfg.token_budget, cfg.rules),
            repository_words(name),
        )
        for name, obj in (issues[i] for i in picked)
    ]


def embed_rate(texts: list[str]) -> dict[str, Any]:
    """Texts per second of the configured model on this CPU, built as one embed actor builds it (its threads)."""
    from issuerisk.conf import load_config
    from issuerisk.encoding.encoders import build_encoder, encoder_spec, plan_pool

    cfg = load_config().embed
    plan = plan_pool(cfg, os.cpu_count() or 1, 0)
    encoder = build_encoder(encoder_spec(cfg, plan))
    encoder.encode(texts[:32])
    t0 = time.perf_counter()
    encoder.encode(texts)
    seconds = time.perf_counter() - t0
    return {
        "model": cfg.model,
        "texts": len(texts),
        "texts_per_s": len(texts) / seconds,
        "actors": plan.actors,
        "threads": plan.threads,
    }


def _cluster_worker(n: int, jit_cache: str, out: str) -> None:
    """Time the CPU backend's steps on ``n`` planted 384-d vectors in this fresh process (``--cluster-worker``).

    A seeded member run (UMAP 5-d, HDBSCAN eom and leaf), the 2-D map, the consensus combine of
    ``cluster.consensus_runs`` members (two real runs repeated: combine's cost, not its result) and DBCV.
    """
    from sklearn.metrics import adjusted_rand_score

    from bench.embed_cluster import planted_vectors
    from issuerisk.clustering.backends import enable_jit_cache, get_backend, member_run
    from issuerisk.clustering.consensus import combine, dbcv, selections_of
    from issuerisk.conf import load_config

    cfg = load_config()
    params, seed = cfg.cluster, cfg.project.seed
    backend = get_backend("cpu")
    times: dict[str, float] = {}

    def timed(step: str, fn: Callable[..., Any], *args: Any) -> Any:
        t0 = time.perf_counter()
        result = fn(*args)
        times[step] = time.perf_counter() - t0
        return result

    def warm_up() -> None:
        enable_jit_cache(jit_cache)
        warm, _ = planted_vectors(300, 5, 384, seed=1)
        member_run(backend, backend.prepare(warm, params), params, seed, selections_of(params))

    timed("jit", warm_up)
    vectors, planted = planted_vectors(n, 30, 384, seed=0)
    prepared = timed("prepare", backend.prepare, vectors, params)
    first = timed("member", member_run, backend, prepared, params, seed, selections_of(params), True)
    second = member_run(backend, prepared, params, seed + 1, selections_of(params))
    timed("coords", backend.reduce, prepared, params, seed, 2)
    runs = params.consensus_runs
    labels, *_ = timed(
        "combine",
        combine,
        [first, second] * (runs // 2) + [first] * (runs % 2),
        prepared,
        params,
        params.member_selection == "auto",
    )
    timed("dbcv", dbcv, first["reduced"], labels, params.dbcv_sample, seed)
    Path(out).write_text(
        json.dumps(
            {
                "seconds": times,
                "runs": runs,
                "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "ari_member_eom": float(adjusted_rand_score(planted, first["eom"][0])),
            }
        )
    )


def embed_cluster_rows(args: argparse.Namespace) -> list[list[Any]]:
    """CPU embedding (measured on real summaries, extrapolated) and clustering (measured on planted vectors) at 10k and
    40k."""
    cores = os.cpu_count() or 1
    rate = embed_rate(real_summaries(args.embed_texts, args.seed))
    print(
        f"embedding: {rate['model']}, {rate['actors']} actor x {rate['threads']} threads, {rate['texts_per_s']:.1f} "
        "texts/s "
        f"measured on {rate['texts']:,} real extractive summaries",
        flush=True,
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="scale-cluster-", dir=args.tmp) as tmp:
        for n in EMBED_SIZES:
            out = Path(tmp) / f"{n}.json"
            _fresh(["--cluster-worker", str(n), str(Path(tmp) / "numba"), str(out)], Path(tmp) / f"{n}.log")
            r = json.loads(out.read_text())
            s = r["seconds"]
            # Ray runs the members and the map as one-CPU tasks side by side; prepare before them, combine and DBCV
            # after.
            consensus = s["prepare"] + (r["runs"] * s["member"] + s["coords"]) / cores + s["combine"] + s["dbcv"]
            rows.append(
                [
                    n,
                    round(n / rate["texts_per_s"] / 60, 1),
                    "extrapolated",
                    round(s["jit"], 1),
                    round(s["prepare"], 1),
                    round(s["member"], 1),
                    round(s["coords"], 1),
                    round(s["combine"], 1),
                    round(consensus / 60, 1),
                    round(r["peak_mb"]),
                    round(r["ari_member_eom"], 3),
                ]
            )
            print(f"  clustering {n:,}: {rows[-1]}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[10_000, 100_000, 1_000_000],
        help="issues per size (duplicates counted)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--pull-requests", type=float, default=0.05, help="share of issues made pull requests (the corpus has none)"
    )
    p.add_argument(
        "--tmp", default=None, help="folder for each size's data and tables (default: the system temp folder)"
    )
    p.add_argument(
        "--embed-cluster",
        action="store_true",
        help="also the CPU embedding and clustering figures at 10k and 40k (about 10 minutes)",
    )
    p.add_argument("--embed-texts", type=int, default=1000, help="real summaries the embedding rate is measured on")
    p.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    p.add_argument("--cluster-worker", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        _worker(*args.worker)
    elif args.cluster_worker:
        _cluster_worker(int(args.cluster_worker[0]), *args.cluster_worker[1:])
    else:
        report(args)


def report(args: argparse.Namespace) -> None:
    """Measure every size (and the embedding and clustering figures when asked) and print the tables."""
    os.environ.setdefault("COLUMNS", "180")  # rich's width when not on a terminal: the tables are wide
    from issuerisk.display import table

    cores = os.cpu_count()
    profile = corpus_profile()
    table(
        f"shape of the SYNTHETIC issues, from the real corpus {REAL_ISSUES.parent.name}",
        ["measure", "real corpus", "synthetic"],
        profile.summary() + [["pull requests", "0 (removed by its authors)", f"{args.pull_requests:.0%} added"]],
    )
    results = [measure(profile, n, args.seed, args.pull_requests, args.tmp) for n in args.sizes]
    table(
        "bench.scale: ingest + filter of SYNTHETIC shaped issues, each size in a fresh process (cold local[*] Spark), "
        f"{cores} cores",
        [
            "issues",
            "repos",
            "gzip MB",
            "generate s",
            "spark start s",
            "ingest s",
            "filter s",
            "ingest + filter s",
            "issues/s",
            "driver peak RSS MB",
            "JVM peak RSS MB",
            "lake MB",
            "silver kept",
        ],
        [
            [
                f"{r['issues']:,}",
                f"{r['repos']:,}",
                round(r["data_mb"]),
                round(r["generate"]),
                round(r["start"], 1),
                round(r["ingest"], 1),
                round(r["filter"], 1),
                round(r["ingest"] + r["filter"], 1),
                round(r["issues"] / (r["ingest"] + r["filter"])),
                round(r["driver_mb"]),
                round(r["jvm_mb"]),
                round(r["lake_mb"]),
                f"{r['filtered']['silver']:,}",
            ]
            for r in results
        ],
    )
    for r in results:
        print(
            f"  {r['issues']:,}: excluded {r['filtered']['excluded']}, rejected "
            f"{r['ingested']['rejects_by_reason'] or 0}"
        )
    if len(results) > 1:
        for name, picked in (("all sizes", results), ("the two largest", results[-2:])):
            n = [r["issues"] for r in picked]
            print(
                f"fitted exponent b of value ~ N^b (log-log least squares, {name}): ingest + filter time "
                f"{slope(n, [r['ingest'] + r['filter'] for r in picked]):.2f}, "
                f"ingest {slope(n, [r['ingest'] for r in picked]):.2f}, filter "
                f"{slope(n, [r['filter'] for r in picked]):.2f}; "
                f"driver peak RSS {slope(n, [r['driver_mb'] for r in picked]):.2f}, JVM peak RSS "
                f"{slope(n, [r['jvm_mb'] for r in picked]):.2f}"
            )
    print(
        "Cluster mode (infra/local-cluster.sh, or a real Spark master): the same stages run as Spark tasks on the "
        "executors "
        "(ingest parses files per task, the filter judges one repository per group), so the time divides by the "
        "executor "
        "cores and the driver stays as flat as here; on this one machine it adds no cores, so it was not measured."
    )
    if args.embed_cluster:
        table(
            "embedding (real summaries, rate extrapolated) and CPU clustering (planted 384-d vectors, 30 clusters, "
            f"measured) on {cores} cores",
            [
                "issues",
                "embed min",
                "embed",
                "JIT s",
                "prepare s",
                "member run s",
                "2-D map s",
                "combine s",
                f"consensus min (est., {cores} cores)",
                "peak MB",
                "ARI member vs planted",
            ],
            embed_cluster_rows(args),
        )


if __name__ == "__main__":
    main()
