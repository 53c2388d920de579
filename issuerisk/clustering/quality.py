"""Quality measures of a clustering run's topics, as pure functions: coherence (NPMI) and diversity.

Topic coherence is the mean normalized pointwise mutual information of each
topic's top keywords over the documents (a keyword, unigram or bigram, occurs in
a document when its words do, in order): NPMI(a, b) = log(P(a,b) / (P(a) P(b))) /
-log P(a,b), in [-1, 1], -1 for a pair that never co-occurs. Topic diversity is
the share of distinct words among all topics' top keywords. BERTopic's paper
reports NPMI of about 0.17 and diversity of about 0.8 to 0.85 on its benchmarks.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np

_WORD = re.compile(r"(?u)\b\w\w+\b")


def npmi(topics: Sequence[Sequence[str]], docs: Sequence[str], top_n: int = 10) -> float | None:
    """Mean NPMI over the keyword pairs of every topic (None without a topic of two keywords).

    Args:
        topics: each topic's keywords, best first.
        docs: the documents the keywords came from.
        top_n: keywords per topic taken.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    normalized = pa.array([" " + " ".join(_WORD.findall(d.lower())) + " " for d in docs], pa.large_string())
    if not len(normalized):
        return None
    presence: dict[str, np.ndarray] = {}

    def seen(
        word: str,
    ) -> np.ndarray:  # a keyword occurs in a document when its words do, in order (Arrow's substring kernel)
        if word not in presence:
            presence[word] = pc.match_substring(normalized, f" {word} ").to_numpy(zero_copy_only=False)
        return presence[word]

    scores = []
    for keywords in topics:
        words = [w.lower() for w in keywords[:top_n] if w]
        pairs = [(a, b) for i, a in enumerate(words) for b in words[i + 1 :]]
        for a, b in pairs:
            pa_, pb_ = seen(a), seen(b)
            p_a, p_b, p_ab = pa_.mean(), pb_.mean(), (pa_ & pb_).mean()
            if p_ab == 0:
                scores.append(-1.0)
            elif p_ab == 1:
                scores.append(1.0)
            else:
                scores.append(math.log(p_ab / (p_a * p_b)) / -math.log(p_ab))
    return float(np.mean(scores)) if scores else None


def diversity(topics: Sequence[Sequence[str]], top_n: int = 10) -> float | None:
    """Share of distinct words among the topics' top ``top_n`` keywords (a bigram counts its words)."""
    words = [w for keywords in topics for k in keywords[:top_n] for w in k.lower().split()]
    return len(set(words)) / len(words) if words else None


def size_stats(labels: np.ndarray) -> dict[str, float]:
    """Clusters, noise share and the smallest, median and largest cluster size of a labelling (-1 is noise)."""
    labels = np.asarray(labels)
    sizes = np.bincount(labels[labels >= 0]) if (labels >= 0).any() else np.array([], dtype=int)
    sizes = sizes[sizes > 0]
    return {
        "clusters": float(len(sizes)),
        "noise_share": float(np.mean(labels < 0)) if len(labels) else 0.0,
        "size_min": float(sizes.min()) if len(sizes) else 0.0,
        "size_median": float(np.median(sizes)) if len(sizes) else 0.0,
        "size_max": float(sizes.max()) if len(sizes) else 0.0,
    }
