"""Stage ``cluster``: StandardScaler -> UMAP -> HDBSCAN on the current embeddings, as a Ray task, into ``gold_clusters``.

The fit runs in a Ray task that asks for what its backend needs (one GPU for
cuML, else one CPU for a seeded fit or every CPU for an unseeded one) and reads
the vectors from Delta where it runs, so on a cluster the work lands on a worker
node, not in the driver. Vectors are read in issue-key order (same input, same
order), so a seeded run is repeatable. UMAP's numba code is cached on disk in
``cluster.jit_cache_dir``, so only a machine's first fit pays the full compile.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from issuerisk.conf import Config
from issuerisk.lakehouse import ArrowTables
from issuerisk.ray_tasks.cluster_backends import ClusterResult, enable_jit_cache, get_backend
from issuerisk.schemas.ml import GOLD_CLUSTERS
from issuerisk.stage import Option, Stage
from issuerisk.vectors import load_current_vectors


def jit_cache_dir(cfg: Config) -> str:
    """Where numba caches UMAP's compiled code: ``cluster.jit_cache_dir`` or ``<warehouse>/../.numba_cache``."""
    if cfg.cluster.jit_cache_dir:
        return cfg.resolve_path(cfg.cluster.jit_cache_dir)
    return str(Path(cfg.project.warehouse.rstrip("/")).parent / ".numba_cache")


def cluster_rows(keys: pa.Table, result: ClusterResult, model: str, run_id: str) -> pa.Table:
    """``gold_clusters`` rows for the keys and their clustering result (same order)."""
    n = keys.num_rows
    return pa.Table.from_arrays(
        [keys.column("repository"), keys.column("number"), pa.array(result.labels, pa.int32()),
         pa.array(result.probabilities, pa.float64()), pa.array(result.outlier_scores, pa.float64()),
         pa.array(result.coords[:, 0], pa.float64()), pa.array(result.coords[:, 1], pa.float64()),
         pa.array([model] * n, pa.string()), pa.array([run_id] * n, pa.string()),
         _optional(result.stability, n), _optional(result.agreement, n)],
        schema=GOLD_CLUSTERS.arrow,
    )


def _optional(values: np.ndarray | None, n: int) -> pa.Array:
    """A per-point float column, null where missing or NaN."""
    if values is None:
        return pa.nulls(n, pa.float64())
    return pa.array(values, pa.float64(), mask=np.isnan(values))


def fit_and_store(cfg: Config, seed: int | None, run_id: str) -> dict[str, Any]:
    """Read the current vectors, fit, and replace the run's ``gold_clusters`` rows (the body of the Ray task).

    Raises:
        issuerisk.vectors.NoVectorsError: nothing embedded yet.
        ClusterBackendError: the backend cannot run here.
        ValueError: too few points for the parameters.
    """
    tables = ArrowTables(cfg)
    keys, vectors = load_current_vectors(tables, cfg)
    impl = get_backend(cfg.cluster.backend)
    cached = enable_jit_cache(jit_cache_dir(cfg)) if impl.name == "cpu" else 0
    t0 = time.perf_counter()
    result = impl.fit(vectors, cfg.cluster, seed)
    fit_s = time.perf_counter() - t0
    tables.merge(GOLD_CLUSTERS, cluster_rows(keys, result, cfg.embed.model, run_id), how="replace_run", run_id=run_id)
    import ray

    return {"backend": impl.name, "issues": int(len(vectors)), "dim": int(vectors.shape[1]), "clusters": result.n_clusters,
            "noise_share": round(float(np.mean(result.labels == -1)), 4), "jit_cached_functions": cached,
            "fit_seconds": round(fit_s, 2), "node_id": ray.get_runtime_context().get_node_id(),
            "host": platform.node(), "pid": os.getpid()}


def task_resources(cfg: Config, seed: int | None, cluster_resources: dict[str, float]) -> dict[str, float]:
    """What the fit asks Ray for: one GPU for cuML (``cuml``, or ``auto`` on a cluster with GPUs), else
    one CPU seeded (UMAP is single-threaded then) or every CPU of the cluster unseeded."""
    backend = cfg.cluster.backend
    if backend == "cuml" or (backend == "auto" and cluster_resources.get("GPU", 0) >= 1):
        return {"num_gpus": 1, "num_cpus": 1}
    return {"num_cpus": 1 if seed is not None else max(1, int(cluster_resources.get("CPU", 1)))}


def run(ctx) -> dict[str, Any]:
    """Fit the clustering in a Ray task and replace this run's ``gold_clusters`` rows.

    Raises:
        issuerisk.vectors.NoVectorsError: nothing embedded yet.
        ClusterBackendError: the backend cannot run where the task landed.
        ValueError: too few points for the parameters.
    """
    import ray

    from issuerisk.display import table

    cfg = ctx.cfg
    seed = cfg.project.seed if cfg.cluster.seeded else None
    ctx.run.seeds["cluster"] = -1 if seed is None else seed
    ctx.ray()
    ctx.run.read("gold_embeddings", "silver_summaries", "silver_issues")
    t0 = time.perf_counter()
    resources = task_resources(cfg, seed, ray.cluster_resources())
    task = ray.remote(fit_and_store).options(**resources, max_retries=0)
    try:
        counts = ray.get(task.remote(cfg, seed, ctx.run.run_id))
    except ray.exceptions.RayTaskError as exc:  # the task's own error, not Ray's wrapper with a remote traceback
        raise (exc.cause if isinstance(exc.cause, Exception) else exc) from None
    ctx.run.wrote(GOLD_CLUSTERS.name)
    counts.update(seed=seed, resources=resources, seconds=round(time.perf_counter() - t0, 2))
    table("cluster", ["backend", "issues", "clusters", "noise share", "seed", "fit s", "total s"],
          [[counts["backend"], counts["issues"], counts["clusters"], counts["noise_share"], "none" if seed is None else seed,
            counts["fit_seconds"], counts["seconds"]]])
    return counts


STAGE = Stage(
    "cluster", "StandardScaler -> UMAP -> HDBSCAN (a Ray task) into gold_clusters", run,
    reads=("gold_embeddings", "silver_summaries", "silver_issues"), writes=(GOLD_CLUSTERS.name,),
    options=(Option(("--backend",), "override cluster.backend", "cluster.backend", {"choices": ("auto", "cpu", "cuml")}),
             Option(("--unseeded",), "multi-threaded UMAP: faster, not bit-repeatable (cluster.seeded: false)", "cluster.seeded",
                    {"action": "store_const", "const": False})),
)
