"""Clustering: parameter checks and backend choice (pure), planted-cluster recovery and seeded repeatability, the stage
on Delta."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from sklearn.metrics import adjusted_rand_score

from bench.embed_cluster import planted_vectors
from issuerisk.clustering.backends import (
    ClusterBackendError,
    ClusterResult,
    check_size,
    get_backend,
    gpu_available,
    single_run,
)
from issuerisk.conf.settings import ClusterConfig
from issuerisk.ray_tasks.cluster import cluster_rows, task_resources
from issuerisk.schemas.gold import GOLD_CLUSTERS
from tests.conftest import make_ctx

SMALL = ClusterConfig(n_neighbors=10, n_components=5, min_cluster_size=15)
SEED = 7


def planted() -> tuple[np.ndarray, np.ndarray]:
    """Synthetic embeddings: 6 planted Gaussian clusters of unequal size, 300 points, 48-d (see bench.embed_cluster)."""
    return planted_vectors(300, 6, 48, noise_norm=0.5, seed=2)


def test_the_fit_asks_ray_for_a_gpu_only_for_cuml():
    assert task_resources(_cfg("cpu"), 42, {"CPU": 8, "GPU": 2}) == {"num_cpus": 1}
    assert task_resources(_cfg("auto"), 42, {"CPU": 8, "GPU": 2}) == {"num_gpus": 1, "num_cpus": 1}
    assert task_resources(_cfg("auto"), 42, {"CPU": 8}) == {"num_cpus": 1}
    assert task_resources(_cfg("cpu"), None, {"CPU": 8}) == {"num_cpus": 8}
    assert task_resources(_cfg("cuml"), 42, {"CPU": 8}) == {"num_gpus": 1, "num_cpus": 1}


def _cfg(backend):
    from types import SimpleNamespace

    return SimpleNamespace(cluster=ClusterConfig(backend=backend))


def test_too_few_points_for_the_neighbourhood_is_named():
    with pytest.raises(ValueError, match="n_neighbors=15"):
        check_size(ClusterConfig(), 10)


def test_too_few_points_for_the_smallest_cluster_is_named():
    with pytest.raises(ValueError, match="min_cluster_size=50"):
        check_size(ClusterConfig(min_cluster_size=50), 20)


def test_unknown_backend_is_named():
    with pytest.raises(ClusterBackendError, match="'sklearn' is unknown"):
        get_backend("sklearn")


def test_auto_falls_back_to_cpu_without_a_gpu():
    if gpu_available():
        pytest.skip("a GPU is present; auto picks cuML here")
    assert get_backend("auto").name == "cpu"


def test_cuml_without_cuml_or_gpu_says_what_to_do():
    if gpu_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ClusterBackendError, match="use backend cpu"):
        get_backend("cuml")


def test_cluster_rows_follow_the_table_schema():
    keys = pa.table({"repository": ["r", "r"], "number": pa.array([1, 2], pa.int64())})
    result = ClusterResult(
        np.array([0, -1]), np.array([0.9, 0.0]), np.array([0.1, 0.8]), np.array([[1.0, 2.0], [3.0, 4.0]])
    )
    rows = cluster_rows(keys, result, "m", "run1")
    assert rows.schema == GOLD_CLUSTERS.arrow
    assert rows.to_pylist()[1] == {
        "repository": "r",
        "number": 2,
        "cluster": -1,
        "probability": 0.0,
        "outlier_score": 0.8,
        "x": 3.0,
        "y": 4.0,
        "model": "m",
        "run_id": "run1",
        "stability": None,
        "agreement": None,
    }


@pytest.fixture(scope="module")
def planted_fit():
    """One seeded CPU fit on planted clusters, shared by the assertions below (UMAP's JIT is paid once)."""
    vectors, labels = planted()
    backend = get_backend("cpu")
    return vectors, labels, single_run(backend, backend.prepare(vectors, SMALL), SMALL, SEED), backend


@pytest.mark.slow
def test_cpu_backend_recovers_planted_clusters(planted_fit):
    _, labels, result, _ = planted_fit
    assert adjusted_rand_score(labels, result.labels) >= 0.9
    assert result.n_clusters == 6
    assert result.coords.shape == (300, 2) and np.isfinite(result.coords).all()
    assert ((result.probabilities >= 0) & (result.probabilities <= 1)).all()


@pytest.mark.slow
def test_seeded_fit_is_repeatable(planted_fit):
    vectors, _, result, backend = planted_fit
    again = single_run(backend, backend.prepare(vectors, SMALL), SMALL, SEED, with_coords=False)
    np.testing.assert_array_equal(again.labels, result.labels)
    np.testing.assert_array_equal(again.probabilities, result.probabilities)


@pytest.mark.gpu
@pytest.mark.slow
def test_cuml_backend_recovers_planted_clusters_and_is_repeatable():
    vectors, labels = planted()
    backend = get_backend("cuml")
    prepared = backend.prepare(vectors, SMALL)
    first, second = single_run(backend, prepared, SMALL, SEED), single_run(backend, prepared, SMALL, SEED)
    assert adjusted_rand_score(labels, first.labels) >= 0.9
    np.testing.assert_array_equal(first.labels, second.labels)


@pytest.mark.slow
def test_cluster_stage_writes_every_run_and_repeats_with_a_seed(ctx, spark, ray_session, planted_fit):
    """Synthetic issues, summaries and planted embeddings written to Delta; two runs (Ray tasks) give identical
    labels."""
    from issuerisk.ray_tasks import cluster
    from issuerisk.ray_tasks.embed import gold_rows
    from issuerisk.schemas.gold import GOLD_EMBEDDINGS
    from issuerisk.schemas.silver import SILVER_ISSUES, SILVER_SUMMARIES
    from issuerisk.vectors import current_texts
    from tests.test_embed import _issue, _summary, _write

    vectors, labels, _, _ = planted_fit
    cfg = ctx.cfg.updated(
        "cluster",
        backend="cpu",
        n_neighbors=10,
        min_cluster_size=15,
        consensus_runs=4,
        jit_cache_dir=str(ctx.cfg.project.warehouse) + "/numba",
    )
    ctx = make_ctx(cfg, spark)
    repo, n = "synthetic/planted", len(vectors)
    _write(ctx, SILVER_ISSUES, [_issue(repo, i) for i in range(n)])
    _write(ctx, SILVER_SUMMARIES, [_summary(ctx.cfg, repo, i, f"text {i}", f"k{i}") for i in range(n)])
    batch = current_texts(ctx.lake.arrow, ctx.cfg)  # the keys the embed stage would store, in key order
    order = np.array(batch.column("number").to_pylist())
    ctx.lake.arrow.merge(GOLD_EMBEDDINGS, gold_rows(batch, vectors[order], ctx.cfg.embed.key, "seed"))

    first = cluster.run(ctx)
    first_id = ctx.run.run_id
    assert ctx.run.seeds["cluster"] == ctx.cfg.project.seed and first["resources"] == {"num_cpus": 1}
    assert first["method"] == "consensus" and first["member_runs"] == 4 and first["noise_share"] < 0.1
    second = cluster.run(ctx := make_ctx(cfg, spark))
    assert (first["issues"], first["clusters"]) == (n, 6) and second["clusters"] == 6
    rows = ctx.lake.spark.read("gold_clusters").collect()
    by_run = {}
    for r in rows:
        by_run.setdefault(r.run_id, {})[r.number] = r.cluster
    assert set(by_run) == {first_id, ctx.run.run_id}
    assert by_run[first_id] == by_run[ctx.run.run_id]
    got = np.array([by_run[first_id][i] for i in range(n)])
    assert adjusted_rand_score(labels, got) >= 0.9
    stability = {r.cluster: r.stability for r in rows if r.run_id == first_id and r.cluster >= 0}
    assert min(stability.values()) > 0.9, "planted clusters are stable across the member runs"
    quality = {
        r.measure: r.value for r in ctx.lake.spark.read("gold_quality").where(f"run_id = '{first_id}'").collect()
    }
    assert quality["clusters"] == 6 and quality["stable_clusters"] == 6 and quality["dbcv"] is not None


def test_cluster_stage_without_embeddings_says_to_embed(ctx, ray_session):
    from issuerisk.ray_tasks import cluster
    from issuerisk.vectors import NoVectorsError

    with pytest.raises(NoVectorsError, match="run `issuerisk embed` first"):
        cluster.run(make_ctx(ctx.cfg.updated("cluster", backend="cpu")))
