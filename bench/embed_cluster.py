"""Benchmark embeddings (Ray pool vs one process, transformer vs static) and UMAP + HDBSCAN at scale.

Run ``.venv/bin/python -m bench.embed_cluster`` (flags keep it short: ``--texts``,
``--sizes``, ``--skip-embed``, ``--skip-cluster``). Part (a) embeds real issue
texts (title + body cut to ``--words`` words, as an extractive summary would be)
with the transformer, the distilled static model and the static model aligned
on other real texts, and reports texts/s, the share of this CPU's fp32 matmul
rate, cosine to the plain model and the clustering ARI against the full
transformer's clustering, beside the transformer's own ARI between two UMAP seeds
(the ceiling any backend can reach).
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
BERTOPIC_DEFAULTS = {"n_neighbors": 15, "n_components": 5, "min_dist": 0.0, "metric": "cosine", "min_cluster_size": 10, "scale": False}


def planted_vectors(n: int, clusters: int, dim: int, noise_norm: float = 0.6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
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


def _cluster_labels(vectors: np.ndarray, seed: int) -> np.ndarray:
    from ray_tasks.cluster_backends import ClusterParams, get_backend

    return get_backend("cpu").fit(vectors, ClusterParams(min_cluster_size=10, seed=seed), with_coords=False).labels


def bench_embed(args) -> list[list]:
    """Part (a): plain vs Ray pool for each backend on real texts, and each backend's agreement with the transformer."""
    import pyarrow as pa
    import ray
    import torch
    from sklearn.metrics import adjusted_rand_score

    from conf.settings import EmbedConfig, RayConfig
    from ray_tasks.embed import EmbedPool, by_length, plan_pool
    from ray_tasks.encoders import EncoderSpec, align_static, build_encoder, distill_static, static_model_dir
    from ray_tasks.models import packaged_minilm_path
    from ray_tasks.runtime import init_ray

    torch.set_num_threads(os.cpu_count() or 1)
    path = packaged_minilm_path()
    pool_texts = real_texts(args.texts + args.align_texts, args.words)
    texts, align_texts = pool_texts[:args.texts], pool_texts[args.texts:]  # disjoint: the alignment never sees the texts it is judged on
    gflops = matmul_gflops()
    init_ray(RayConfig(num_cpus=os.cpu_count()))
    static_dir = distill_static(path, static_model_dir(args.static_cache, "all-MiniLM-L6-v2", args.static_dims), args.static_dims)
    rows, reference, ref_labels, transformer = [], None, None, None
    for name in ("transformer", "static (distilled)", "static (aligned)"):
        backend = name.split()[0]
        cfg = EmbedConfig(backend=backend, max_seq_length=args.max_seq_length, batch_size=args.batch_size)
        plan = plan_pool(cfg, ray.cluster_resources().get("CPU", 1), 0)
        model_path = path
        if name == "static (distilled)":
            model_path = str(static_dir)
        elif name == "static (aligned)":
            model_path = str(align_static(static_dir, Path(tempfile.mkdtemp(prefix="aligned-")) / "m", align_texts, transformer.encode(align_texts)))
        spec = EncoderSpec(backend=backend, model="all-MiniLM-L6-v2", path=model_path, max_seq_length=args.max_seq_length,
                           batch_size=args.batch_size, threads=plan.threads)
        encoder = build_encoder(spec)
        encoder.encode(texts[:8])
        plain, plain_s = _timed(encoder.encode, texts)
        per_text, ceiling = "", ""
        if backend == "transformer":
            transformer = encoder
            tokens = np.mean([min(len(ids), args.max_seq_length) for ids in encoder.model.tokenizer(texts)["input_ids"]])
            per_text = transformer_flops_per_token(encoder.model[0].auto_model.config) * tokens
            reference, ref_labels = plain, _cluster_labels(plain, 42)
            ceiling = float(adjusted_rand_score(ref_labels, _cluster_labels(plain, 43)))

        pool = EmbedPool(spec, plan, max_in_flight=2)
        # The stage's path: length-sorted windows cut into tasks (ray_tasks.embed.by_length).
        ordered = pa.Table.from_batches(list(by_length(pa.table({"key": np.arange(len(texts)), "text": texts}).to_batches(), len(texts))))
        batches = [pa.Table.from_batches([b]) for b in ordered.to_batches(max_chunksize=args.rows_per_task)]
        results, pool_s = _timed(lambda: list(pool.map(batches)))
        pool.close()
        pooled = np.empty_like(plain)
        for batch, vectors in results:
            pooled[batch.column("key").to_numpy()] = vectors
        labels = ref_labels if backend == "transformer" else _cluster_labels(plain, 42)
        cos_pool = float(np.mean(np.sum(pooled * plain, axis=1)))
        cos_ref = float(np.mean(np.sum(plain * reference, axis=1))) if plain.shape[1] == reference.shape[1] else float("nan")
        sim_corr = float(np.corrcoef((plain @ plain.T).ravel(), (reference @ reference.T).ravel())[0, 1])
        ari = float(adjusted_rand_score(ref_labels, labels))
        for where, seconds in (("one process", plain_s), (f"Ray pool x{plan.actors}", pool_s)):
            rate = len(texts) / seconds
            share = f"{rate * per_text / 1e9 / gflops:.2f}" if per_text else "-"
            agreement = f"{ari:.3f}" + (f" (seed 43: {ceiling:.3f})" if ceiling != "" else "")
            rows.append([name, where, len(texts), round(rate, 1), round(plain_s / seconds, 3), share,
                         round(cos_pool if "Ray" in where else cos_ref, 4), round(sim_corr, 3), agreement])
    ray.shutdown()
    print(f"fp32 matmul rate: {gflops:.1f} GFLOP/s; mean tokens per text capped at {args.max_seq_length}; "
          f"static alignment fitted on {len(align_texts):,} other real texts")
    return rows


def cluster_worker(spec: dict) -> dict:
    """Run one timed UMAP + HDBSCAN fit in this (fresh) process; JIT warm-up on 300 points is timed apart."""
    from sklearn.metrics import adjusted_rand_score

    from ray_tasks.cluster_backends import ClusterParams, enable_jit_cache, get_backend

    t0 = time.perf_counter()
    if spec["jit_cache"]:
        enable_jit_cache(spec["jit_cache"])
    params = ClusterParams(**spec["params"])
    backend = get_backend("cpu")
    warm, _ = planted_vectors(300, 5, spec["dim"], seed=1)
    backend.fit(warm, params, with_coords=False)
    jit_s = time.perf_counter() - t0
    vectors, labels = planted_vectors(spec["n"], spec["clusters"], spec["dim"], seed=spec["seed"])
    result, fit_s = _timed(backend.fit, vectors, params, False)
    return {"jit_s": jit_s, "fit_s": fit_s, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "ari": float(adjusted_rand_score(labels, result.labels)), "clusters": result.n_clusters}


def _in_fresh_process(spec: dict) -> dict:
    out = subprocess.run([sys.executable, "-m", "bench.embed_cluster", "--worker", json.dumps(spec)], cwd=REPO, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"cluster worker failed for {spec}:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_cluster(args) -> list[list]:
    """Part (b): seeded, unseeded and BERTopic-default fits per size, each in a fresh process sharing one JIT cache."""
    rows = []
    cache = args.jit_cache or tempfile.mkdtemp(prefix="numba-cache-")
    ours = {"n_neighbors": 15, "n_components": 5, "min_dist": 0.0, "metric": "cosine", "min_cluster_size": 15}
    settings = [("ours seeded", {**ours, "seed": 42}), ("ours unseeded", {**ours, "seed": None}), ("BERTopic default", {**BERTOPIC_DEFAULTS, "seed": 42})]
    for n in args.sizes:
        for name, params in settings:
            for jit_label, jit_cache in (("no cache", None), ("numba cache", cache)) if name == "ours seeded" and n == args.sizes[0] else (("numba cache", cache),):
                spec = {"n": n, "dim": 384, "clusters": args.clusters, "seed": 0, "params": params, "jit_cache": jit_cache}
                r = _in_fresh_process(spec)
                rows.append([name, n, jit_label, round(r["jit_s"], 1), round(r["fit_s"], 1), round(r["peak_mib"]), r["clusters"], round(r["ari"], 3)])
                print(rows[-1], flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    from issuerisk.display import table

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--texts", type=int, default=2000, help="real issue texts for part (a)")
    p.add_argument("--align-texts", type=int, default=2000, help="other real texts the aligned static model is fitted on")
    p.add_argument("--words", type=int, default=96, help="body words kept per text (summary length)")
    p.add_argument("--max-seq-length", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--rows-per-task", type=int, default=512)
    p.add_argument("--static-dims", type=int, default=256)
    p.add_argument("--static-cache", default=str(REPO / "warehouse" / "models" / "static"))
    p.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[10000, 40000])
    p.add_argument("--clusters", type=int, default=30)
    p.add_argument("--jit-cache", default=None, help="numba cache folder shared by the fits (default: a new temp folder)")
    p.add_argument("--skip-embed", action="store_true")
    p.add_argument("--skip-cluster", action="store_true")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(cluster_worker(json.loads(args.worker))))
        return
    if not args.skip_embed:
        table("(a) embedding on real issue texts (MiniLM-L6)",
              ["backend", "where", "texts", "texts/s", "x plain", "share of matmul", "cosine (pool vs plain | vs transformer)", "sim. corr. vs transformer", "HDBSCAN ARI vs transformer (its own, other seed)"],
              bench_embed(args))
    if not args.skip_cluster:
        table("(b) UMAP + HDBSCAN on planted clusters, 384-d, each in a fresh process",
              ["settings", "points", "JIT", "JIT + warm-up s", "fit s", "peak MiB", "clusters", "ARI vs planted"],
              bench_cluster(args))


if __name__ == "__main__":
    main()
