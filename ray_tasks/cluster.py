"""Stage ``cluster``: StandardScaler -> UMAP -> HDBSCAN on the current embeddings, as Ray tasks, into ``gold_clusters``.

The fit runs in a Ray task that asks for what its backend needs (one GPU for
cuML, else one CPU) and reads the vectors from Delta where it runs, so on a
cluster the work lands on worker nodes, not in the driver. By default
(``cluster.method: consensus``) that task prepares the vectors once (scaling and
the exact kNN graph), fans out ``cluster.consensus_runs`` seeded member runs as
further Ray tasks, and keeps the clusters they agree on
(:mod:`issuerisk.clustering.consensus`), with each cluster's bootstrap Jaccard
stability; ``cluster.method: single`` is one seeded run. Seeds follow from
``project.seed``, so a run is bit-repeatable. UMAP's numba code is cached on
disk in ``cluster.jit_cache_dir``, so only a machine's first fit pays the full
compile. Quality measures (noise share, DBCV, sizes, stability) go to ``gold_quality``.
"""

from __future__ import annotations

import os
import platform
import time
from typing import Any

import numpy as np
import pyarrow as pa

from issuerisk.clustering.backends import ClusterResult, Prepared, enable_jit_cache, get_backend, member_run, single_run
from issuerisk.clustering.consensus import dbcv, member_seeds
from issuerisk.clustering.consensus import fit as consensus_fit
from issuerisk.conf import Config
from issuerisk.constants import DISSOLVED_BELOW, STABLE_FROM
from issuerisk.context import Context
from issuerisk.lakehouse import ArrowTables
from issuerisk.schemas.gold import GOLD_CLUSTERS, GOLD_EMBEDDINGS, GOLD_QUALITY
from issuerisk.schemas.silver import SILVER_ISSUES, SILVER_PROJECT_TERMS, SILVER_SUMMARIES
from issuerisk.stage import Option, Stage
from issuerisk.vectors import load_current_vectors


def jit_cache_dir(cfg: Config) -> str:
    """Where numba caches UMAP's compiled code: ``cluster.jit_cache_dir``, else this user's cache folder
    (``$XDG_CACHE_HOME/issuerisk/numba``, ``~/.cache/issuerisk/numba``) on the machine the fit runs on, so a
    new warehouse (or an object-store one) does not pay the compile again in every Ray worker."""
    return cfg.cache_dir(cfg.cluster.jit_cache_dir, "numba")


def cluster_rows(keys: pa.Table, result: ClusterResult, model: str, run_id: str) -> pa.Table:
    """``gold_clusters`` rows for the keys and their clustering result (same order)."""
    n = keys.num_rows
    return pa.Table.from_arrays(
        [
            keys.column("repository"),
            keys.column("number"),
            pa.array(result.labels, pa.int32()),
            pa.array(result.probabilities, pa.float64()),
            pa.array(result.outlier_scores, pa.float64()),
            pa.array(result.coords[:, 0], pa.float64()),
            pa.array(result.coords[:, 1], pa.float64()),
            pa.array([model] * n, pa.string()),
            pa.array([run_id] * n, pa.string()),
            _optional(result.stability, n),
            _optional(result.agreement, n),
        ],
        schema=GOLD_CLUSTERS.arrow,
    )


def _optional(values: np.ndarray | None, n: int) -> pa.Array:
    """A per-point float column, null where missing or NaN."""
    if values is None:
        return pa.nulls(n, pa.float64())
    return pa.array(values, pa.float64(), mask=np.isnan(values))


def _backend(cfg: Config):
    impl = get_backend(cfg.cluster.backend)
    if impl.name == "cpu":
        enable_jit_cache(jit_cache_dir(cfg))
    return impl


def _writable(prepared: Prepared) -> Prepared:
    """A copy of arrays Ray handed over read-only (zero-copy from its object store); UMAP writes into its inputs."""
    return Prepared(np.array(prepared.x), np.array(prepared.knn_indices), np.array(prepared.knn_distances))


def _member(
    cfg: Config, prepared: Prepared, seed: int, selections: tuple[str, ...], keep_reduced: bool
) -> dict[str, object]:
    """One member run (the body of a Ray task)."""
    return member_run(_backend(cfg), _writable(prepared), cfg.cluster, seed, selections, keep_reduced)


def _coords(cfg: Config, prepared: Prepared, seed: int) -> np.ndarray:
    """The 2-D map of the issues (the body of a Ray task)."""
    return _backend(cfg).reduce(_writable(prepared), cfg.cluster, seed, 2)


def fit_consensus(
    cfg: Config, prepared: Prepared, seed: int, resources: dict[str, float]
) -> tuple[ClusterResult, dict[str, Any]]:
    """The consensus of ``cluster.consensus_runs`` seeded member runs, fanned out as Ray tasks."""
    import ray

    params = cfg.cluster
    seeds = member_seeds(seed, params.consensus_runs)
    shared = ray.put(prepared)
    task = ray.remote(_member).options(**resources, max_retries=0)
    coords = ray.remote(_coords).options(**resources, max_retries=0).remote(cfg, shared, seed)
    members, labels, share, stability, used = consensus_fit(
        lambda seeds, selections: ray.get(
            [task.remote(cfg, shared, s, selections, i == 0) for i, s in enumerate(seeds)]
        ),
        prepared,
        params,
        seed,
    )
    per_point = np.where(labels >= 0, stability[np.maximum(labels, 0)] if len(stability) else np.nan, np.nan)
    result = ClusterResult(
        labels.astype(np.int32),
        share,
        1.0 - share,
        np.asarray(ray.get(coords), dtype=np.float64),
        stability=per_point,
        agreement=share,
        validity=dbcv(members[0]["reduced"], labels, params.dbcv_sample, seed),
    )
    return result, {
        "member_selection": used,
        "member_runs": len(seeds),
        "seeds": f"{seeds[0]}..{seeds[-1]}",
        "cluster_stability": {int(c): round(float(v), 4) for c, v in enumerate(stability)},
    }


def fit_and_store(
    cfg: Config, seed: int | None, run_id: str, resources: dict[str, float], pins: dict[str, int]
) -> dict[str, Any]:
    """Read the current vectors, fit, and replace the run's ``gold_clusters`` rows (the body of the coordinating Ray
    task).

    Raises:
        issuerisk.vectors.NoVectorsError: nothing embedded yet.
        ClusterBackendError: the backend cannot run here.
        ValueError: too few points for the parameters.
    """
    import ray

    tables = ArrowTables(cfg, pins)
    keys, vectors = load_current_vectors(tables, cfg)
    impl = _backend(cfg)
    t0 = time.perf_counter()
    prepared = impl.prepare(vectors, cfg.cluster)
    details: dict[str, Any] = {}
    if cfg.cluster.method == "consensus" and seed is not None:
        result, details = fit_consensus(cfg, prepared, seed, resources)
    else:
        result = single_run(impl, prepared, cfg.cluster, seed)
    fit_s = time.perf_counter() - t0
    tables.merge(GOLD_CLUSTERS, cluster_rows(keys, result, cfg.embed.key, run_id), how="replace_run", run_id=run_id)
    quality = quality_rows(run_id, result, cfg)
    tables.merge(GOLD_QUALITY, pa.Table.from_pylist(quality, schema=GOLD_QUALITY.arrow))
    return {
        "backend": impl.name,
        "method": cfg.cluster.method if seed is not None else "single (unseeded)",
        "issues": int(len(vectors)),
        "dim": int(vectors.shape[1]),
        "clusters": result.n_clusters,
        "noise_share": round(float(np.mean(result.labels == -1)), 4),
        "dbcv": None if result.validity is None else round(result.validity, 4),
        "fit_seconds": round(fit_s, 2),
        "node_id": ray.get_runtime_context().get_node_id(),
        "host": platform.node(),
        "pid": os.getpid(),
        **details,
    }


def quality_rows(run_id: str, result: ClusterResult, cfg: Config) -> list[dict[str, Any]]:
    """``gold_quality`` rows of a clustering: noise share, DBCV, sizes and (for a consensus) stability."""
    from issuerisk.clustering.quality import size_stats

    sizes = size_stats(result.labels)
    rows = [
        {"run_id": run_id, "measure": k, "value": v, "detail": "issues in clusters" if k.startswith("size") else None}
        for k, v in sizes.items()
    ]
    rows.append(
        {
            "run_id": run_id,
            "measure": "dbcv",
            "value": result.validity,
            "detail": f"relative validity of HDBSCAN ({cfg.cluster.method})"
            if cfg.cluster.method == "single"
            else f"DBCV of the consensus labels in the first member's UMAP space, {cfg.cluster.dbcv_sample} issues at "
            "most",
        }
    )
    if result.stability is not None:
        per_cluster = {int(c): float(s) for c, s in zip(result.labels, result.stability) if c >= 0 and not np.isnan(s)}
        values = np.array(list(per_cluster.values()))
        rows += [
            {
                "run_id": run_id,
                "measure": "stability_mean",
                "value": float(values.mean()) if len(values) else None,
                "detail": f"mean bootstrap Jaccard of the clusters over {cfg.cluster.consensus_runs} member runs",
            },
            {
                "run_id": run_id,
                "measure": "unstable_clusters",
                "value": float((values < DISSOLVED_BELOW).sum()),
                "detail": f"clusters with Jaccard < {DISSOLVED_BELOW} (dissolved)",
            },
            {
                "run_id": run_id,
                "measure": "stable_clusters",
                "value": float((values >= STABLE_FROM).sum()),
                "detail": f"clusters with Jaccard >= {STABLE_FROM}",
            },
        ]
    return rows


def task_resources(cfg: Config, seed: int | None, cluster_resources: dict[str, float]) -> dict[str, float]:
    """What each fit task asks Ray for: one GPU for cuML (``cuml``, or ``auto`` on a cluster with GPUs), else
    one CPU (UMAP is single-threaded when seeded) or every CPU of the cluster for an unseeded single run."""
    backend = cfg.cluster.backend
    if backend == "cuml" or (backend == "auto" and cluster_resources.get("GPU", 0) >= 1):
        return {"num_gpus": 1, "num_cpus": 1}
    return {"num_cpus": 1 if seed is not None else max(1, int(cluster_resources.get("CPU", 1)))}


def run(ctx: Context) -> dict[str, Any]:
    """Fit the clustering in Ray tasks and replace this run's ``gold_clusters`` rows.

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
    t0 = time.perf_counter()
    resources = task_resources(cfg, seed, ray.cluster_resources())
    task = ray.remote(fit_and_store).options(**resources, max_retries=0)
    try:
        counts = ray.get(task.remote(cfg, seed, ctx.run.run_id, resources, ctx.lake.arrow.pins))
    except ray.exceptions.RayTaskError as exc:  # the task's own error, not Ray's wrapper with a remote traceback
        raise (exc.cause if isinstance(exc.cause, Exception) else exc) from None
    ctx.run.runtime["cluster_backend"] = counts["backend"]
    counts.update(seed=seed, resources=resources, seconds=round(time.perf_counter() - t0, 2))
    table(
        "cluster",
        ["backend", "method", "issues", "clusters", "noise share", "DBCV", "seed", "fit s", "total s"],
        [
            [
                counts["backend"],
                counts["method"],
                counts["issues"],
                counts["clusters"],
                counts["noise_share"],
                counts["dbcv"],
                "none" if seed is None else seed,
                counts["fit_seconds"],
                counts["seconds"],
            ]
        ],
    )
    return counts


STAGE = Stage(
    "cluster",
    "StandardScaler -> UMAP -> HDBSCAN (a consensus of seeded runs, as Ray tasks) into gold_clusters",
    run,
    reads=(GOLD_EMBEDDINGS.name, SILVER_SUMMARIES.name, SILVER_ISSUES.name, SILVER_PROJECT_TERMS.name),
    writes=(GOLD_CLUSTERS.name, GOLD_QUALITY.name),
    sections=("cluster",),
    options=(
        Option(("--backend",), "override cluster.backend", "cluster.backend"),
        Option(("--method",), "override cluster.method", "cluster.method"),
        Option(
            ("--unseeded",),
            "one multi-threaded UMAP run: faster, not bit-repeatable (cluster.seeded: false)",
            "cluster.seeded",
            {"action": "store_const", "const": False},
        ),
    ),
)
