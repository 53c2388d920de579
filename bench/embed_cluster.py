"""Benchmark embeddings (Ray pool vs one process) and UMAP + HDBSCAN at scale.

Run ``.venv/bin/python -m bench.embed_cluster`` (flags keep it short: ``--texts``,
``--sizes``, ``--skip-embed``, ``--skip-cluster``). Part (a) embeds real issue
texts (title + body cut to ``--words`` words, as an extractive summary would be)
with the transformer in one process and through the stage's Ray pool, and
reports texts/s, the share of this CPU's fp32 matmul rate and the cosine of the
pool's vectors to the plain ones. Seed-to-seed agreement of the clustering is
``python -m bench.stability``.
Part (b) fits UMAP + HDBSCAN on synthetic planted clusters in fresh processes
(so peak memory and the numba JIT are measured apart): seeded, unseeded and
BERTopic's default settings, with the ARI against the planted labels.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
REAL_ISSUES = REPO.parent / "shared" / "data" / "lai2024-ml-issues" / "issues"
BERTOPIC_DEFAULTS = {
    "n_neighbors": 15,
    "n_components": 5,
    "min_dist": 0.0,
    "metric": "cosine",
    "min_cluster_size": 10,
    "scale": False,
}


def planted_vectors(
    n: int, clusters: int, dim: int, noise_norm: float = 0.6, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic embeddings: ``clusters`` Gaussian blobs of unequal size around random unit centres, L2-normalized.

    ``noise_norm`` is the expected length of each point's offset from its centre.
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = rng.choice(clusters, size=n, p=rng.dirichlet(np.full(clusters, 5.0)))
    x = centres[labels] + rng.normal(scale=noise_norm / np.sqrt(dim), size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), labels


def matmul_gflops(size: int = 1024, repeats: int = 10) -> float:
    """This CPU's torch fp32 matrix-multiply rate."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - t0) / 1e9


def real_texts(n: int, words: int, seed: int = 0) -> list[str]:
    """``n`` real issues (seeded pick across repositories): title plus the body's first ``words`` words."""
    texts = []
    for file in sorted(REAL_ISSUES.glob("*.jsonl.gz")):
        with gzip.open(file, "rt") as fh:
            for line in fh:
                issue = json.loads(line)
                body = " ".join((issue.get("body") or "").split()[:words])
                texts.append(f"{issue.get('title') or ''}. {body}".strip())
    rng = np.random.default_rng(seed)
    return [texts[i] for i in rng.choice(len(texts), size=min(n, len(texts)), replace=False)]


def transformer_flops_per_token(config) -> float:
    """Forward FLOPs per token of a BERT-style encoder (dense layers; attention scores excluded)."""
    h, i, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    return 2.0 * layers * (4 * h * h + 2 * h * i)


def _timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def bench_embed(args) -> list[list]:
    """Part (a): the transformer in one process and through the Ray pool, on real texts."""
    import pyarrow as pa
    import ray
    import torch

    from issuerisk.conf.settings import EmbedConfig, RayConfig
    from issuerisk.encoding.encoders import EncoderSpec, build_encoder, plan_pool
    from issuerisk.encoding.models import packaged_minilm_path
    from issuerisk.ray_runtime import init_ray
    from issuerisk.ray_tasks.embed import EmbedPool, by_length

    torch.set_num_threads(os.cpu_count() or 1)
    texts = real_texts(args.texts, args.words)
    gflops = matmul_gflops()
    init_ray(RayConfig(num_cpus=os.cpu_count()))
    plan = plan_pool(
        EmbedConfig(max_seq_length=args.max_seq_length, batch_size=args.batch_size),
        ray.cluster_resources().get("CPU", 1),
        0,
    )
    spec = EncoderSpec(
        model="all-MiniLM-L6-v2",
        path=packaged_minilm_path(),
        max_seq_length=args.max_seq_length,
        batch_size=args.batch_size,
        threads=plan.threads,
    )
    encoder = build_encoder(spec)
    encoder.encode(texts[:8])
    plain, plain_s = _timed(encoder.encode, texts)
    tokens = np.mean([min(len(ids), args.max_seq_length) for ids in encoder.model.tokenizer(texts)["input_ids"]])
    per_text = transformer_flops_per_token(encoder.model[0].auto_model.config) * tokens
    pool = EmbedPool(spec, plan, max_in_flight=2)
    # The stage's path: length-sorted windows cut into tasks (ray_tasks.embed.by_length).
    ordered = pa.Table.from_batches(
        list(by_length(pa.table({"key": np.arange(len(texts)), "text": texts}).to_batches(), len(texts)))
    )
    batches = [pa.Table.from_batches([b]) for b in ordered.to_batches(max_chunksize=args.rows_per_task)]
    results, pool_s = _timed(lambda: list(pool.map(batches)))
    pool.close()
    ray.shutdown()
    pooled = np.empty_like(plain)
    for batch, vectors in results:
        pooled[batch.column("key").to_numpy()] = vectors
    cosine = float(np.mean(np.sum(pooled * plain, axis=1)))
    print(
        f"fp32 matmul rate: {gflops:.1f} GFLOP/s; mean tokens per text {tokens:.1f} (capped at {args.max_seq_length})"
    )
    return [
        [
            where,
            len(texts),
            round(len(texts) / seconds, 1),
            round(plain_s / seconds, 3),
            f"{len(texts) / seconds * per_text / 1e9 / gflops:.2f}",
            round(cosine, 5) if "Ray" in where else 1.0,
        ]
        for where, seconds in (("one process", plain_s), (f"Ray pool x{plan.actors}", pool_s))
    ]


def cluster_worker(spec: dict) -> dict:
    """Run one timed UMAP + HDBSCAN fit in this (fresh) process; JIT warm-up on 300 points is timed apart."""
    from sklearn.metrics import adjusted_rand_score

    from issuerisk.clustering.backends import enable_jit_cache, get_backend, single_run
    from issuerisk.conf.settings import ClusterConfig

    t0 = time.perf_counter()
    if spec["jit_cache"]:
        enable_jit_cache(spec["jit_cache"])
    settings = dict(spec["params"])
    seed = settings.pop("seed")
    params = ClusterConfig(**settings)
    backend = get_backend("cpu")

    def fit(vectors: np.ndarray):
        return single_run(backend, backend.prepare(vectors, params), params, seed, with_coords=False)

    warm, _ = planted_vectors(300, 5, spec["dim"], seed=1)
    fit(warm)
    jit_s = time.perf_counter() - t0
    vectors, labels = planted_vectors(spec["n"], spec["clusters"], spec["dim"], seed=spec["seed"])
    result, fit_s = _timed(fit, vectors)
    return {
        "jit_s": jit_s,
        "fit_s": fit_s,
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "ari": float(adjusted_rand_score(labels, result.labels)),
        "clusters": result.n_clusters,
    }


def _in_fresh_process(spec: dict) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "bench.embed_cluster", "--worker", json.dumps(spec)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"cluster worker failed for {spec}:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_cluster(args) -> list[list]:
    """Part (b): seeded, unseeded and BERTopic-default fits per size, each in a fresh process sharing one JIT cache."""
    rows = []
    cache = args.jit_cache or tempfile.mkdtemp(prefix="numba-cache-")
    ours = {"n_neighbors": 15, "n_components": 5, "min_dist": 0.0, "metric": "cosine", "min_cluster_size": 15}
    settings = [
        ("ours seeded", {**ours, "seed": 42}),
        ("ours unseeded", {**ours, "seed": None}),
        ("BERTopic default", {**BERTOPIC_DEFAULTS, "seed": 42}),
    ]
    for n in args.sizes:
        for name, params in settings:
            for jit_label, jit_cache in (
                (("no cache", None), ("numba cache", cache))
                if name == "ours seeded" and n == args.sizes[0]
                else (("numba cache", cache),)
            ):
                spec = {
                    "n": n,
                    "dim": 384,
                    "clusters": args.clusters,
                    "seed": 0,
                    "params": params,
                    "jit_cache": jit_cache,
                }
                r = _in_fresh_process(spec)
                rows.append(
                    [
                        name,
                        n,
                        jit_label,
                        round(r["jit_s"], 1),
                        round(r["fit_s"], 1),
                        round(r["peak_mib"]),
                        r["clusters"],
                        round(r["ari"], 3),
                    ]
                )
                print(rows[-1], flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    from issuerisk.display import table

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--texts", type=int, default=2000, help="real issue texts for part (a)")
    p.add_argument("--words", type=int, default=96, help="body words kept per text (summary length)")
    p.add_argument("--max-seq-length", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--rows-per-task", type=int, default=512)
    p.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[10000, 40000])
    p.add_argument("--clusters", type=int, default=30)
    p.add_argument(
        "--jit-cache", default=None, help="numba cache folder shared by the fits (default: a new temp folder)"
    )
    p.add_argument("--skip-embed", action="store_true")
    p.add_argument("--skip-cluster", action="store_true")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(cluster_worker(json.loads(args.worker))))
        return
    if not args.skip_embed:
        table(
            "(a) embedding on real issue texts (MiniLM-L6)",
            ["where", "texts", "texts/s", "x plain", "share of matmul", "cosine to plain"],
            bench_embed(args),
        )
    if not args.skip_cluster:
        table(
            "(b) UMAP + HDBSCAN on planted clusters, 384-d, each in a fresh process",
            ["settings", "points", "JIT", "JIT + warm-up s", "fit s", "peak MiB", "clusters", "ARI vs planted"],
            bench_cluster(args),
        )


if __name__ == "__main__":
    main()
