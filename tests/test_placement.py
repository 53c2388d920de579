"""New issues placed on a finished clustering by their nearest issues (SYNTHETIC vectors)."""

from __future__ import annotations

import numpy as np

from issuerisk.clustering.centroids import unit
from issuerisk.clustering.placement import place, similarity_floor


def blobs(seed: int = 0):
    """Two tight clusters on orthogonal axes and a scatter of noise on a third, in 8 dimensions."""
    rng = np.random.default_rng(seed)
    axes = np.eye(8, dtype=np.float32)
    a = axes[0] + 0.05 * rng.standard_normal((40, 8))
    b = axes[1] + 0.05 * rng.standard_normal((40, 8))
    noise = axes[2] + 0.4 * rng.standard_normal((20, 8))
    known = unit(np.vstack([a, b, noise]).astype(np.float32))
    labels = np.array([0] * 40 + [1] * 40 + [-1] * 20)
    return known, labels, axes


def test_new_issues_join_the_cluster_they_sit_in_and_the_rest_is_noise_with_its_reason():
    known, labels, axes = blobs()
    floor = similarity_floor(known, 0.01, 100, seed=0)
    assert 0.5 < floor < 0.95, "the scattered noise issues are farther from their nearest than the clusters' are"
    new = unit(np.vstack([axes[0] + 0.02, axes[1] - 0.02, axes[2], axes[5], axes[0] + axes[1]]).astype(np.float32))
    inside_a, inside_b, in_noise, alien, between = place(known, labels, new, k=10, attach=0.3, floor=floor)
    assert (inside_a.cluster, inside_b.cluster) == (0, 1) and inside_a.reason is None
    assert inside_a.vote_share == 1.0 and inside_a.similarity > 0.95
    assert in_noise.cluster == -1 and "run's noise" in in_noise.reason
    assert alien.cluster == -1 and "nothing in the run is like it" in alien.reason and alien.nearest < floor
    assert between.cluster in (0, 1) and 0.3 <= between.vote_share < 0.7


def test_a_tie_between_two_clusters_under_the_threshold_is_noise():
    known, labels, axes = blobs()
    between = unit((axes[0] + axes[1])[None, :].astype(np.float32))
    (split,) = place(known, labels, between, k=10, attach=0.6, floor=-1.0)
    assert split.cluster == -1 and "no pattern holds 60%" in split.reason
    (lenient,) = place(known, labels, between, k=10, attach=0.3, floor=-1.0)
    assert lenient.cluster in (0, 1) and lenient.vote_share >= 0.3
