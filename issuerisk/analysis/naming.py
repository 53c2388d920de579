"""Names a person would give a pattern, and its place in a published fault taxonomy, as pure functions.

**Names.** A cluster's titles say what its issues are about in the words their
authors chose. The name is the phrase of two to five words that the most of the
cluster's titles share and few titles of other clusters do (coverage within the
cluster times log inverse frequency across clusters), with stop words trimmed
from its ends. A phrase must agree with the cluster's c-TF-IDF keywords (share a
word with its top ten), so a phrase of a minority of its titles cannot name a
cluster whose words say something else; when no phrase is shared by enough
titles and agrees, the top keywords stand in.

**Categories.** Each defect pattern is mapped to a category of Humbatova et al.,
"Taxonomy of Real Faults in Deep Learning Systems" (ICSE 2020) (model, tensors
and inputs, training, GPU usage, API), plus the two issue trackers add
(installation and environment, performance), by the cosine similarity between
the category's short description and the centroid of the cluster's
representative issues in the same embedding space; below a threshold it stays
``unmapped``.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

UNMAPPED = "unmapped"
_TOKEN = re.compile(r"[A-Za-z][A-Za-z0-9_.+-]*[A-Za-z0-9]|[A-Za-z]")


def _stop_words() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS) | {
        "issue",
        "bug",
        "question",
        "help",
        "error",
        "problem",
        "using",
        "use",
        "feature",
        "request",
    }


def phrases(title: str, stop: frozenset[str], sizes: range = range(2, 6)) -> set[tuple[str, ...]]:
    """The distinct lower-case n-grams of a title that neither start nor end with a stop word."""
    tokens = [t.lower() for t in _TOKEN.findall(title) if len(t) > 1]
    found = set()
    for n in sizes:
        for i in range(len(tokens) - n + 1):
            gram = tuple(tokens[i : i + n])
            if gram[0] not in stop and gram[-1] not in stop and not all(t in stop for t in gram):
                found.add(gram)
    return found


def agrees(phrase: Sequence[str], vocabulary: set[str] | None) -> bool:
    """Whether a phrase shares a word with a cluster's keywords (one holding the other, for words of four letters or
    more: ``filenotfounderror`` and ``filenotfound``); True when the cluster has no keywords to check against."""
    if not vocabulary:
        return True
    return any(t == w or (min(len(t), len(w)) >= 4 and (t in w or w in t)) for t in phrase for w in vocabulary)


def readable_names(
    titles_by_cluster: Mapping[int, Sequence[str]], keywords: Mapping[int, Sequence[str]], min_coverage: float = 0.04
) -> dict[int, tuple[str, str]]:
    """(name, source) per cluster: a phrase its titles share (``titles``), else its top keywords (``keywords``).

    Args:
        titles_by_cluster: the (project-word-free) titles of each cluster's issues.
        keywords: each cluster's c-TF-IDF keywords, best first.
        min_coverage: share of the cluster's titles a phrase must occur in (and at least 2 titles).
    """
    stop = _stop_words()
    vocabulary = {c: {w for k in list(words)[:10] for w in k.lower().split()} for c, words in keywords.items()}
    per_cluster = {c: [phrases(t, stop) for t in titles] for c, titles in titles_by_cluster.items()}
    clusters_with: Counter[tuple[str, ...]] = Counter()
    for grams in per_cluster.values():
        clusters_with.update(set().union(*grams) if grams else set())
    k = max(len(per_cluster), 1)
    names = {}
    for cluster, grams in per_cluster.items():
        counts: Counter[tuple[str, ...]] = Counter(g for title in grams for g in title)
        best, best_score = None, 0.0
        for gram, count in counts.items():
            coverage = count / max(len(grams), 1)
            if count < 2 or coverage < min_coverage or not agrees(gram, vocabulary.get(cluster)):
                continue
            score = coverage * math.log(1 + k / clusters_with[gram]) * (1 + 0.15 * (len(gram) - 2))
            if score > best_score or (score == best_score and best is not None and gram < best):
                best, best_score = gram, score
        if best is not None:
            names[cluster] = (" ".join(best), "titles")
        else:
            names[cluster] = (" / ".join(list(keywords.get(cluster, []))[:3]) or f"cluster {cluster}", "keywords")
    return names


def map_categories(
    centroids: Mapping[int, np.ndarray], descriptions: Mapping[str, np.ndarray], threshold: float
) -> dict[int, tuple[str, float]]:
    """(category, cosine similarity) per cluster: the category whose description vector is closest to the cluster's
    centroid, or :data:`UNMAPPED` (with the best similarity) when even that is below ``threshold``."""
    names = list(descriptions)
    matrix = np.stack([_unit(descriptions[n]) for n in names]) if names else np.zeros((0, 1))
    out = {}
    for cluster, centroid in centroids.items():
        if not names:
            out[cluster] = (UNMAPPED, float("nan"))
            continue
        similarity = matrix @ _unit(centroid)
        best = int(np.argmax(similarity))
        out[cluster] = (names[best] if similarity[best] >= threshold else UNMAPPED, float(similarity[best]))
    return out


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    norm = np.linalg.norm(v)
    return v / norm if norm else v
