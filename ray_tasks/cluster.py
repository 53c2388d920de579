"""Cluster the current embeddings of the in-scope issues into ``gold_clusters`` (one set of rows per run).

Vectors are read with delta-rs in issue-key order (same input, same order), so
a seeded run is repeatable; the fit runs in this process, so UMAP's numba code
is compiled at most once per ``issuerisk run`` and, through numba's on-disk
cache, mostly reused by later runs.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from conf import Config
from conf.settings import ClusterConfig
from ray_tasks.cluster_backends import ClusterParams, ClusterResult, enable_jit_cache, get_backend
from ray_tasks.embed import current_vectors_sql, in_sample, merge_rows, model_id, query, restrict, summary_identity
from schemas.ml import GOLD_CLUSTERS


class NothingToClusterError(RuntimeError):
    """No current embeddings exist for the configured model and summaries."""


def params_from(cfg: ClusterConfig, seed: int | None) -> ClusterParams:
    """The backend parameters of a cluster config with the run's seed (None: unseeded, multi-threaded)."""
    return ClusterParams(
        n_neighbors=cfg.n_neighbors, n_components=cfg.n_components, min_dist=cfg.min_dist, metric=cfg.metric,
        min_cluster_size=cfg.min_cluster_size, min_samples=cfg.min_samples,
        cluster_selection_method=cfg.cluster_selection_method, scale=cfg.scale, seed=seed,
    )


def jit_cache_dir(cfg: Config) -> str:
    """Where numba caches UMAP's compiled code: ``cluster.jit_cache_dir`` or ``<warehouse>/../.numba_cache``."""
    if cfg.cluster.jit_cache_dir:
        return cfg.resolve_path(cfg.cluster.jit_cache_dir)
    return str(Path(cfg.project.warehouse.rstrip("/")).parent / ".numba_cache")


def load_vectors(cfg: Config) -> tuple[pa.Table, np.ndarray]:
    """Keys (repository, number) and the matrix of current vectors for the configured embedding model.

    Raises:
        NothingToClusterError: no vectors, or vectors of mixed dimensions.
    """
    model = model_id(cfg.embed)
    batches = list(restrict(query(cfg, current_vectors_sql(summary_identity(cfg), model)), in_sample(cfg)))
    rows = pa.Table.from_batches(batches) if batches else None
    if rows is None or rows.num_rows == 0:
        raise NothingToClusterError(f"no current embeddings for model {model!r}; run `issuerisk embed` first (with the same embed.backend)")
    dims = set(rows.column("dim").to_pylist())
    if len(dims) != 1:
        raise NothingToClusterError(f"embeddings of model {model!r} have mixed dimensions {sorted(dims)}; rerun `issuerisk embed`")
    flat = rows.column("vector").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return rows.select(["repository", "number"]), flat.reshape(rows.num_rows, dims.pop()).astype(np.float32)


def cluster_rows(keys: pa.Table, result: ClusterResult, model: str, run_id: str) -> pa.Table:
    """``gold_clusters`` rows for the keys and their clustering result (same order)."""
    n = keys.num_rows
    return pa.Table.from_arrays(
        [keys.column("repository"), keys.column("number"), pa.array(result.labels, pa.int32()),
         pa.array(result.probabilities, pa.float64()), pa.array(result.outlier_scores, pa.float64()),
         pa.array(result.coords[:, 0], pa.float64()), pa.array(result.coords[:, 1], pa.float64()),
         pa.array([model] * n, pa.string()), pa.array([run_id] * n, pa.string())],
        schema=GOLD_CLUSTERS.arrow,
    )


def run(ctx, backend: str | None = None, unseeded: bool = False) -> dict:
    """Fit StandardScaler -> UMAP -> HDBSCAN on the current embeddings and MERGE ``gold_clusters`` for this run.

    Args:
        ctx: the stage context.
        backend: ``auto``, ``cpu`` or ``cuml``; None keeps ``cluster.backend``.
        unseeded: multi-threaded UMAP without a seed (faster, not repeatable).

    Raises:
        NothingToClusterError: nothing embedded yet.
        ClusterBackendError: the backend cannot run here.
        ValueError: too few points for the parameters.
    """
    from issuerisk.display import progress, table

    cfg = ctx.cfg
    seed = None if unseeded or not cfg.cluster.seeded else cfg.project.seed
    ctx.run.seeds["cluster"] = -1 if seed is None else seed
    impl = get_backend(backend or cfg.cluster.backend)
    bar = progress(3, "cluster", "step", ctx.progress)
    t0 = time.perf_counter()
    ctx.run.read("gold_embeddings", "silver_summaries", "silver_issues")
    keys, vectors = load_vectors(cfg)
    bar.update(1)
    cached = enable_jit_cache(jit_cache_dir(cfg)) if impl.name == "cpu" else 0
    t1 = time.perf_counter()
    result = impl.fit(vectors, params_from(cfg.cluster, seed))
    fit_s = time.perf_counter() - t1
    bar.update(1)
    merge_rows(cfg.table_path(GOLD_CLUSTERS.name), cluster_rows(keys, result, model_id(cfg.embed), ctx.run.run_id), GOLD_CLUSTERS.key)
    bar.update(1)
    bar.close()
    ctx.run.wrote(GOLD_CLUSTERS.name)
    noise = float(np.mean(result.labels == -1))
    counts = {"backend": impl.name, "issues": int(len(vectors)), "dim": int(vectors.shape[1]), "clusters": result.n_clusters,
              "noise_share": round(noise, 4), "seed": seed, "jit_cached_functions": cached,
              "fit_seconds": round(fit_s, 2), "seconds": round(time.perf_counter() - t0, 2)}
    ctx.run.stage("cluster", **counts)
    table("cluster", ["backend", "issues", "clusters", "noise share", "seed", "fit s", "total s"],
          [[impl.name, counts["issues"], counts["clusters"], noise, "none" if seed is None else seed, fit_s, counts["seconds"]]])
    return counts
