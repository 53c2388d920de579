"""Names a person would give a pattern, and its place in a published fault taxonomy, as pure functions.

**Names.** A cluster's titles say what its issues are about in the words their
authors chose. The name is the phrase of two to five words from its titles that
the most of the cluster's issues hold (coverage over each issue's title and
text) and few titles of other clusters do (coverage times log inverse frequency
across clusters), with stop words trimmed from its ends. A phrase must cover at
least ``topics.name_min_coverage`` of the cluster (most of it, by default: a
phrase of a minority never names it) and agree with its c-TF-IDF keywords (share
a word with its top ten). Else three of its top six keywords stand in: those
that are specific to it (not about as common outside it, not a word like
"error" or "bug", no word of one already picked) and cover the most of its
issues. The coverage of the name is kept beside it.

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


def _normalised(text: str) -> str:
    return " " + " ".join(t.lower() for t in _TOKEN.findall(text) if len(t) > 1) + " "


def _coverage(words: Sequence[str], documents: Sequence[str]) -> float:
    """Share of the (normalised) documents that hold the words, in order and adjacent."""
    needle = " " + " ".join(words) + " "
    return sum(needle in d for d in documents) / max(len(documents), 1)


def readable_names(
    titles_by_cluster: Mapping[int, Sequence[str]],
    keywords: Mapping[int, Sequence[str]],
    min_coverage: float = 0.04,
    documents: Mapping[int, Sequence[str]] | None = None,
    generic: Mapping[int, Sequence[str]] | None = None,
) -> dict[int, tuple[str, str, float]]:
    """(name, source, coverage) per cluster: a phrase its titles share (``titles``), else its keywords
    (``keywords``); coverage is the share of the cluster's documents the name describes.

    Args:
        titles_by_cluster: the (project-word-free) titles of each cluster's issues.
        keywords: each cluster's c-TF-IDF keywords, best first.
        min_coverage: share of the cluster's documents a phrase must occur in (and at least 2 of them).
        documents: each cluster's issues as texts to measure coverage on (title and body, or title and summary);
            None measures it on the titles.
        generic: each cluster's keywords that are about as common outside it (see
            :func:`issuerisk.clustering.quality.breadth`): a keyword name leaves them out when others remain.
    """
    stop = _stop_words()
    vocabulary = {c: {w for k in list(words)[:10] for w in k.lower().split()} for c, words in keywords.items()}
    per_cluster = {c: [phrases(t, stop) for t in titles] for c, titles in titles_by_cluster.items()}
    texts = {c: [_normalised(t) for t in (documents or titles_by_cluster).get(c, [])] for c in per_cluster}
    clusters_with: Counter[tuple[str, ...]] = Counter()
    for grams in per_cluster.values():
        clusters_with.update(set().union(*grams) if grams else set())
    k = max(len(per_cluster), 1)
    names = {}
    for cluster, grams in per_cluster.items():
        counts: Counter[tuple[str, ...]] = Counter(g for title in grams for g in title)
        best, best_score, best_coverage = None, 0.0, 0.0
        for gram, count in counts.items():
            if count < 2 or not agrees(gram, vocabulary.get(cluster)):
                continue
            coverage = _coverage(gram, texts[cluster])
            if coverage < min_coverage:
                continue
            score = coverage * math.log(1 + k / clusters_with[gram]) * (1 + 0.15 * (len(gram) - 2))
            if score > best_score or (score == best_score and best is not None and gram < best):
                best, best_score, best_coverage = gram, score, coverage
        if best is not None:
            names[cluster] = (" ".join(best), "titles", round(best_coverage, 4))
            continue
        top = [w for w in list(keywords.get(cluster, []))[:6] if w]  # the most distinctive (c-TF-IDF) only
        specific = [w for w in top if w not in set((generic or {}).get(cluster, ())) and w.lower() not in stop] or top
        chosen: list[str] = []
        for word in sorted(specific, key=lambda w: -_coverage(w.lower().split(), texts[cluster])):
            if len(chosen) < 3 and not set(word.lower().split()) & {p for c in chosen for p in c.lower().split()}:
                chosen.append(word)  # "errno" after "filenotfounderror errno" says nothing new
        shown = [w for w in top if w in chosen]  # in keyword order
        covered = sum(any(" " + w.lower() + " " in d for w in shown) for d in texts[cluster])
        names[cluster] = (
            " / ".join(shown) or f"cluster {cluster}",
            "keywords",
            round(covered / max(len(texts[cluster]), 1), 4),
        )
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
