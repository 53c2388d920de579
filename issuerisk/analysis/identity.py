"""A pattern's identity across runs: clusters of two runs matched one to one, and what changed between them.

Two clusters are the same pattern when they share issues and their centroids
point the same way. The score of a pair is the mean of the Jaccard index of
their issue sets and the cosine similarity of their centroids; the optimal
one-to-one assignment (Hungarian) of the score keeps the pairs that reach
``min_score``. A matched cluster inherits the earlier run's ``pattern_id``, so a
pattern keeps its id when the corpus grows or parameters change a little;
others get a new id. :func:`changes` reads splits and merges from the overlaps.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass

import numpy as np

Key = Hashable


def _unit(v: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(v)
    return v / norm if norm else v


def match(
    previous: Mapping[int, set[Key]],
    previous_centroids: Mapping[int, np.ndarray],
    current: Mapping[int, set[Key]],
    current_centroids: Mapping[int, np.ndarray],
    min_score: float,
) -> dict[int, tuple[int, float]]:
    """{current cluster: (previous cluster, score)} of the one-to-one matches scoring at least ``min_score``."""
    from scipy.optimize import linear_sum_assignment

    old, new = sorted(previous), sorted(current)
    if not old or not new:
        return {}
    score = np.zeros((len(new), len(old)))
    for i, c in enumerate(new):
        for j, p in enumerate(old):
            shared = len(current[c] & previous[p])
            jaccard = shared / len(current[c] | previous[p]) if shared else 0.0
            cosine = (
                float(_unit(current_centroids[c]) @ _unit(previous_centroids[p]))
                if c in current_centroids and p in previous_centroids
                else 0.0
            )
            score[i, j] = (jaccard + max(cosine, 0.0)) / 2
    rows, cols = linear_sum_assignment(-score)
    return {new[i]: (old[j], float(score[i, j])) for i, j in zip(rows, cols) if score[i, j] >= min_score}


def pattern_ids(
    matched: Mapping[int, tuple[int, float]], previous_ids: Mapping[int, str], clusters: list[int], run_id: str
) -> dict[int, str]:
    """The pattern id of each current cluster: the matched earlier cluster's, else a new ``<run_id>:<cluster>``."""
    ids = {}
    for c in clusters:
        earlier = matched.get(c)
        ids[c] = previous_ids.get(earlier[0]) if earlier and previous_ids.get(earlier[0]) else f"{run_id}:{c}"
    return ids


@dataclass(frozen=True)
class Changes:
    """How the patterns of run A became those of run B."""

    new: list[int]
    gone: list[int]
    split: dict[int, list[int]]
    merged: dict[int, list[int]]


def changes(a: Mapping[int, set[Key]], b: Mapping[int, set[Key]], share: float = 0.2) -> Changes:
    """Patterns new in B (no A cluster gives it ``share`` of its issues), gone from A (none in B holds ``share`` of
    its issues), split (an A cluster with ``share`` of its issues in each of several B clusters) and merged (a B
    cluster taking ``share`` of its issues from each of several A clusters). Only issues in both runs count."""
    both = set().union(*a.values()) & set().union(*b.values()) if a and b else set()
    a = {c: m & both for c, m in a.items()}
    b = {c: m & both for c, m in b.items()}
    to_b = {c: [d for d, n in b.items() if m and len(m & n) >= share * len(m)] for c, m in a.items()}
    to_a = {d: [c for c, m in a.items() if n and len(m & n) >= share * len(n)] for d, n in b.items()}
    return Changes(
        new=sorted(d for d, src in to_a.items() if not src),
        gone=sorted(c for c, dst in to_b.items() if not dst),
        split={c: sorted(dst) for c, dst in to_b.items() if len(dst) > 1},
        merged={d: sorted(src) for d, src in to_a.items() if len(src) > 1},
    )
