"""New issues placed on a finished clustering's patterns without re-clustering (pure numpy; noise is label -1).

The consensus puts an issue in a cluster when its vote share (over the member runs) reaches ``attach_threshold``.
The member runs are not kept, so a new issue votes through its neighbours instead: its ``k`` most cosine-similar
issues of the run, each weighted by its similarity, vote with their consensus labels (noise included). The issue
joins the cluster with the largest weighted share when that share reaches the same ``attach_threshold``; else it is
noise, with the reason. An issue farther from the run's issues than almost every issue of the run is from its own
nearest neighbour (below the run's ``floor_quantile`` of those similarities) is noise too: nothing in the run is
like it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from issuerisk.constants import NOISE


@dataclass(frozen=True)
class Placement:
    """Where one new issue lands: its cluster (-1: noise), the vote share of that cluster (of the best cluster for
    noise), the mean similarity to its neighbours in that cluster, the similarity of its nearest issue, and why it is
    noise (None when placed)."""

    cluster: int
    vote_share: float
    similarity: float | None
    nearest: float
    reason: str | None


def neighbours(known: np.ndarray, queries: np.ndarray, k: int, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """(indices, similarities) of each query's ``k`` most cosine-similar rows of ``known`` (unit rows), best first."""
    k = min(k, len(known))
    index = np.empty((len(queries), k), dtype=np.int64)
    sims = np.empty((len(queries), k), dtype=np.float32)
    for start in range(0, len(queries), chunk):
        block = queries[start : start + chunk] @ known.T
        top = np.argpartition(-block, k - 1, axis=1)[:, :k]
        values = np.take_along_axis(block, top, axis=1)
        order = np.argsort(-values, axis=1, kind="stable")
        index[start : start + chunk] = np.take_along_axis(top, order, axis=1)
        sims[start : start + chunk] = np.take_along_axis(values, order, axis=1)
    return index, sims


def similarity_floor(known: np.ndarray, quantile: float, sample: int, seed: int) -> float:
    """The ``quantile`` of the similarity of the run's issues (a seeded sample of them, noise included) to their
    nearest other issue of the run."""
    if len(known) < 2:
        return -1.0
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(known), size=min(sample, len(known)), replace=False)
    _, sims = neighbours(known, known[picked], 2)
    return float(np.quantile(sims[:, 1], quantile))


def place(
    known: np.ndarray, labels: np.ndarray, new: np.ndarray, k: int, attach: float, floor: float
) -> list[Placement]:
    """Each new issue's :class:`Placement` on the run's clusters (``known``: the run's unit vectors, ``labels``: its
    consensus labels, ``new``: unit vectors to place)."""
    if len(new) == 0:
        return []
    index, sims = neighbours(known, new, k)
    weights = np.maximum(sims, 1e-6)
    out = []
    for row, near, weight in zip(labels[index], sims, weights):
        shares: dict[int, float] = {}
        for label, w in zip(row.tolist(), weight.tolist()):
            shares[label] = shares.get(label, 0.0) + w
        total = sum(shares.values())
        clusters = {c: s / total for c, s in shares.items() if c != NOISE}
        best = max(clusters, key=lambda c: (clusters[c], -c)) if clusters else NOISE
        share = clusters.get(best, 0.0)
        nearest = float(near[0])
        if nearest < floor:
            reason = (
                f"its nearest issue of the run is less similar ({nearest:.2f}) than the run's issues are to theirs "
                f"(floor {floor:.2f}): nothing in the run is like it"
            )
        elif share >= attach:
            mean = float(near[row == best].mean())
            out.append(Placement(int(best), round(share, 4), round(mean, 4), round(nearest, 4), None))
            continue
        elif shares.get(NOISE, 0.0) / total >= share:
            reason = f"most of its {len(row)} nearest issues are the run's noise ({shares[NOISE] / total:.0%})"
        else:
            reason = (
                f"no pattern holds {attach:.0%} of its {len(row)} nearest issues (best: cluster {best}, {share:.0%})"
            )
        out.append(Placement(NOISE, round(share, 4), None, round(nearest, 4), reason))
    return out
