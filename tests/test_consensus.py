"""The consensus of member runs and Hennig's bootstrap Jaccard on SYNTHETIC member labellings with known answers."""

from __future__ import annotations

import numpy as np

from issuerisk.clustering.consensus import blob_share, bootstrap_jaccard, coassociation, consensus, edges_of


def planted_runs(n_per=40, k=3, runs=6, flip=0.0, seed=0):
    """Runs that agree on k planted groups, each run renumbering them and moving a share ``flip`` of points at
    random."""
    rng = np.random.default_rng(seed)
    truth = np.repeat(np.arange(k), n_per)
    out = []
    for _ in range(runs):
        labels = rng.permutation(k)[truth]
        moved = rng.random(len(truth)) < flip
        labels[moved] = rng.integers(0, k, moved.sum())
        out.append(labels)
    return truth, np.array(out)


def chain_edges(truth, neighbours=4):
    """A kNN graph within each planted group (points of a group are each other's neighbours)."""
    idx = np.array(
        [[i] + [j for j in np.flatnonzero(truth == truth[i]) if j != i][:neighbours] for i in range(len(truth))]
    )
    return edges_of(idx)


def test_runs_that_agree_give_back_the_planted_clusters_with_stability_one():
    truth, runs = planted_runs()
    labels, share = consensus(
        len(truth), chain_edges(truth), runs, runs, min_cluster_size=10, core_threshold=0.5, attach_threshold=0.3
    )
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(truth, labels) == 1.0 and (labels >= 0).all()
    assert (share == 1.0).all()
    assert np.allclose(bootstrap_jaccard(labels, runs), 1.0)


def test_random_labellings_give_low_stability():
    rng = np.random.default_rng(3)
    truth = np.repeat(np.arange(3), 40)
    noise_runs = rng.integers(0, 3, size=(8, len(truth)))
    stability = bootstrap_jaccard(truth, noise_runs)
    assert (stability < 0.5).all()


def test_a_point_without_a_consistent_home_is_noise():
    truth, runs = planted_runs(runs=4)
    runs[:, 0] = np.arange(4) % 3  # point 0 lands in a different group in every run
    labels, share = consensus(
        len(truth), chain_edges(truth), runs, runs, min_cluster_size=10, core_threshold=0.5, attach_threshold=0.6
    )
    assert labels[0] == -1 and share[0] == 0.0 and (labels[1:] >= 0).all()


def test_coassociation_ignores_noise_and_absent_points():
    runs = np.array([[0, 0, -1, 1], [0, 0, 1, 1], [-2, 0, 1, 1]])
    edges = np.array([[0, 1], [2, 3], [1, 2]])
    assert coassociation(runs, edges).tolist() == [1.0, 2 / 3, 0.0]


def test_blob_share_counts_runs_with_one_giant_cluster():
    runs = np.array([[0] * 9 + [1], [0, 0, 1, 1, 2, 2, 3, 3, -1, -1]])
    assert blob_share(runs) == 0.5


def test_dbcv_leaves_out_clusters_with_too_few_sampled_members():
    from issuerisk.clustering.consensus import dbcv

    rng = np.random.default_rng(0)
    reduced = np.vstack([rng.normal(0, 0.1, (40, 2)), rng.normal(5, 0.1, (40, 2)), [[10.0, 10.0]]])
    labels = np.array([0] * 40 + [1] * 40 + [2])  # cluster 2 has one member: its own spanning tree cannot be built
    value = dbcv(reduced, labels, sample=1000, seed=0)
    assert value is not None and 0.5 < value <= 1
    assert dbcv(reduced, np.array([0] * 80 + [1]), sample=1000, seed=0) is None
