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
from dataclasses import dataclass

import numpy as np

from issuerisk.constants import FAILURE_WORDS, FRAMEWORK_WORDS

_WORD = re.compile(r"(?u)\b\w\w+\b")


class Presence:
    """Which documents hold a keyword (a unigram or n-gram occurs when its words do, in order), over the documents
    normalised once; each keyword's answer is kept.

    Words are looked up in an inverted index (word -> documents) built once; an n-gram is searched as a substring
    only in the documents that hold all its words, so a corpus of tens of thousands of issue bodies answers thousands
    of keywords in seconds instead of a full scan each.
    """

    def __init__(self, docs: Sequence[str]) -> None:
        import pyarrow as pa
        from scipy import sparse

        tokens = [_WORD.findall(d.lower()) for d in docs]
        self.docs = pa.array([" " + " ".join(t) + " " for t in tokens], pa.large_string())
        self.vocabulary: dict[str, int] = {}
        rows, cols = [], []
        for row, words in enumerate(tokens):
            ids = {self.vocabulary.setdefault(w, len(self.vocabulary)) for w in words}
            rows.extend([row] * len(ids))
            cols.extend(ids)
        self._index = sparse.csc_matrix(
            (np.ones(len(rows), dtype=bool), (rows, cols)), shape=(len(tokens), len(self.vocabulary))
        )
        self._seen: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.docs)

    def _word(self, word: str) -> np.ndarray:
        held = np.zeros(len(self), dtype=bool)
        column = self.vocabulary.get(word)
        if column is not None:
            held[self._index.indices[self._index.indptr[column] : self._index.indptr[column + 1]]] = True
        return held

    def __call__(self, word: str) -> np.ndarray:
        import pyarrow.compute as pc

        if word not in self._seen:
            words = _WORD.findall(word.lower())
            held = self._word(words[0]) if words else np.zeros(len(self), dtype=bool)
            for w in words[1:]:
                held &= self._word(w)
            if len(words) > 1 and held.any():  # in order, next to each other: Arrow's substring kernel on those
                rows = np.flatnonzero(held)
                found = pc.match_substring(self.docs.take(rows), f" {' '.join(words)} ")
                held[rows] = found.to_numpy(zero_copy_only=False)
            self._seen[word] = held
        return self._seen[word]


def _pair_scores(keywords: Sequence[str], presence: Presence, top_n: int) -> list[float]:
    """NPMI of every pair of a topic's top ``top_n`` keywords."""
    words = [w.lower() for w in keywords[:top_n] if w]
    scores = []
    for i, a in enumerate(words):
        for b in words[i + 1 :]:
            in_a, in_b = presence(a), presence(b)
            p_a, p_b, p_ab = in_a.mean(), in_b.mean(), (in_a & in_b).mean()
            if p_ab == 0:
                scores.append(-1.0)
            elif p_ab == 1:
                scores.append(1.0)
            else:
                scores.append(math.log(p_ab / (p_a * p_b)) / -math.log(p_ab))
    return scores


def npmi(topics: Sequence[Sequence[str]], docs: Sequence[str] | Presence, top_n: int = 10) -> float | None:
    """Mean NPMI over the keyword pairs of every topic (None without a topic of two keywords).

    Args:
        topics: each topic's keywords, best first (one topic alone gives that topic's coherence).
        docs: the documents the keywords are counted in, or their :class:`Presence`.
        top_n: keywords per topic taken.
    """
    presence = docs if isinstance(docs, Presence) else Presence(docs)
    if not len(presence):
        return None
    scores = [score for keywords in topics for score in _pair_scores(keywords, presence, top_n)]
    return float(np.mean(scores)) if scores else None


@dataclass(frozen=True)
class Breadth:
    """How broad one cluster is: a catch-all is named by words that are hardly more common in it than elsewhere.

    ``generic_keywords``: its top words (the topics stage passes them in BERTopic's c-TF-IDF order) that are less
    than ``generic_lift`` times as common (share of documents holding them) in the cluster as in the run's other
    documents, or that name a framework or failing as such (:data:`~issuerisk.constants.FRAMEWORK_WORDS`,
    :data:`~issuerisk.constants.FAILURE_WORDS`: "tensorflow" and "failed" set a cluster of TensorFlow's failures
    apart from the run's feature requests and questions, but say where and that, not what fails): words that do not
    set the cluster apart as one failure; their share of its top words is ``generic_share``.
    ``cohesion``: mean cosine of its issues' embeddings to their centroid; ``spread``: its ``1 - cohesion`` over
    the run's median cluster's (above 1: looser than the typical cluster). ``npmi``: the coherence of those words.
    """

    cohesion: float
    spread: float
    generic_share: float
    generic_keywords: list[str]
    npmi: float | None


def breadth(
    embeddings: np.ndarray,
    labels: np.ndarray,
    keywords: dict[int, Sequence[str]],
    docs: Sequence[str] | Presence,
    *,
    generic_lift: float,
    top_n: int = 10,
) -> dict[int, Breadth]:
    """:class:`Breadth` of every cluster in ``keywords`` (its top keywords), from the unit-length ``embeddings`` and
    ``labels`` of all the run's documents (noise included: it counts among the documents outside a cluster)."""
    presence = docs if isinstance(docs, Presence) else Presence(docs)
    labels = np.asarray(labels)
    cohesion = {}
    for cluster in keywords:
        members = embeddings[labels == cluster]
        centroid = members.mean(axis=0)
        norm = float(np.linalg.norm(centroid))
        cohesion[cluster] = float((members @ (centroid / norm)).mean()) if norm > 0 else 0.0
    typical = float(np.median([1.0 - c for c in cohesion.values()])) if cohesion else 0.0
    out = {}
    for cluster, words in keywords.items():
        top = [w for w in words[:top_n] if w]
        inside = labels == cluster
        outside = ~inside
        generic = [
            w
            for w in top
            if set(w.lower().split()) <= FRAMEWORK_WORDS | FAILURE_WORDS
            or (outside.any() and presence(w)[inside].mean() < generic_lift * presence(w)[outside].mean())
        ]
        out[cluster] = Breadth(
            cohesion=round(cohesion[cluster], 4),
            spread=round((1.0 - cohesion[cluster]) / typical, 4) if typical > 0 else 1.0,
            generic_share=round(len(generic) / len(top), 4) if top else 0.0,
            generic_keywords=generic,
            npmi=None if (score := npmi([top], presence, top_n)) is None else round(score, 4),
        )
    return out


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
