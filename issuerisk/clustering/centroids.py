"""Cluster centroids and the issues nearest them, in embedding space (pure numpy; noise is label -1).

Shared by the topics stage (representative issues) and the explain stage (the centroid an issue is explained
toward, and which issues to explain).
"""

from __future__ import annotations

import numpy as np

from issuerisk.constants import NOISE


def unit(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1.0, norms)


def representatives(embeddings: np.ndarray, labels: np.ndarray, k: int) -> dict[int, list[int]]:
    """Per cluster (noise excluded) the positions of the ``k`` embeddings most cosine-similar to its centroid."""
    normed = unit(embeddings)
    result = {}
    for cluster in sorted(set(labels.tolist()) - {NOISE}):
        members = np.flatnonzero(labels == cluster)
        centroid = normed[members].mean(axis=0)
        scores = normed[members] @ centroid
        order = np.lexsort((members, -scores))
        result[int(cluster)] = members[order[:k]].tolist()
    return result


def centroids(vectors: np.ndarray, labels: np.ndarray) -> dict[int, np.ndarray]:
    """Per cluster (noise excluded) the normalized mean of its members' unit vectors."""
    normed = unit(vectors)
    out = {}
    for cluster in sorted(set(labels.tolist()) - {NOISE}):
        mean = normed[labels == cluster].mean(axis=0)
        out[int(cluster)] = mean / (np.linalg.norm(mean) or 1.0)
    return out
