"""Stage ``topics``: BERTopic keywords, a short label and representative issues per cluster.

BERTopic is fitted on the run's precomputed embeddings with our HDBSCAN labels
passed as ``y`` through pass-through sub-models (``BaseDimensionalityReduction``,
``BaseCluster``), so it never clusters again and never embeds: no embedding
model is given and none is downloaded. BERTopic renumbers topics by size; its
``topic_mapper_`` maps them back to our cluster ids. The documents are the
texts that were embedded (summaries with project-only words removed: the text
the clusters were built from), so keywords name failures, not projects.
Representative issues are the ones whose embeddings lie closest to their
cluster's centroid, the same vectors the clustering saw.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from issuerisk.analysis.identity import match, pattern_ids
from issuerisk.analysis.naming import map_categories, readable_names
from issuerisk.clustering.centroids import representatives
from issuerisk.clustering.quality import Presence, breadth, diversity, npmi
from issuerisk.constants import NOISE
from issuerisk.context import Context
from issuerisk.display import table
from issuerisk.gold import clustering_run, optional_float, resolve_run_id, run_issues, run_rows, run_table
from issuerisk.lakehouse import ArrowTables
from issuerisk.schemas.gold import GOLD_CLUSTERS, GOLD_EMBEDDINGS, GOLD_QUALITY, GOLD_TOPICS
from issuerisk.schemas.silver import SILVER_ISSUES, SILVER_PROJECT_TERMS, SILVER_SUMMARIES
from issuerisk.stage import RUN_ID, Stage, preload
from issuerisk.summarizers import without_field_labels
from issuerisk.text.masking import mask, repository_words
from issuerisk.vectors import load_current_vectors, project_words


class TopicsInputError(ValueError):
    """Documents, embeddings and labels do not line up."""


@dataclass(frozen=True)
class Topic:
    """Keywords of one of our clusters and the positions of its most representative documents.

    ``keywords`` are ordered for a reader (describing and own words first, :func:`fit_topics`); ``ranked`` are
    BERTopic's own top words by c-TF-IDF, the cluster's word distribution as it is: breadth is measured on them, so
    that putting a catch-all's few specific words first does not hide that most of its words are generic. Like the
    keywords, each adds a word (:func:`distinct`): "tf keras" after "tf" and "keras" would count those twice.
    """

    cluster: int
    label: str
    keywords: list[str]
    weights: list[float]
    representative: list[int]
    n: int
    ranked: list[str]


def distinct(keywords: Sequence[str], size: int) -> list[int]:
    """Positions of the first ``size`` keywords that each add a word not already among those picked: "loss nan" after
    "loss" and "nan", or "model onnx" after "onnx model", says nothing new."""
    chosen: list[int] = []
    seen: set[str] = set()
    for i, word in enumerate(keywords):
        tokens = set(word.split())
        if not tokens or tokens <= seen:
            continue
        chosen.append(i)
        seen |= tokens
        if len(chosen) == size:
            break
    return chosen


def short_label(keywords: Sequence[str], size: int = 3) -> str:
    """The first ``size`` keywords that add a word not already in the label, joined by ' / '."""
    return " / ".join(keywords[i] for i in distinct(keywords, size))


def _describes(holds: np.ndarray, inside: np.ndarray, min_coverage: float, lift: float) -> bool:
    """Whether a keyword held by the documents ``holds`` covers ``min_coverage`` of the cluster ``inside`` and is
    ``lift`` times as common there as in the other documents."""
    share = float(holds[inside].mean())
    elsewhere = float(holds[~inside].mean()) if (~inside).any() else 0.0
    return share >= min_coverage and share >= lift * elsewhere


def owners(
    candidates: dict[int, list[tuple[str, float]]], labels: np.ndarray, presence: Presence, max_patterns: int
) -> dict[str, set[int]]:
    """For each word of the clusters' candidate keywords, the ``max_patterns`` clusters (of those listing it) whose
    documents hold it most often relative to all documents (lift), ties to the smaller cluster id. The corpus share
    is the same for every cluster of one word, so they are ranked by the share of their own documents."""
    clustered = labels >= 0
    sizes = np.bincount(labels[clustered])
    listing: dict[str, set[int]] = {}
    for cluster, words in candidates.items():
        for word, _ in words:
            for token in word.lower().split():
                listing.setdefault(token, set()).add(cluster)
    own = {}
    for token, listed in listing.items():
        counts = np.bincount(labels[clustered & presence(token)], minlength=len(sizes))
        own[token] = set(sorted(listed, key=lambda c: (-counts[c] / sizes[c], c))[:max_patterns])
    return own


def fit_topics(
    docs: Sequence[str],
    embeddings: np.ndarray,
    labels: Sequence[int],
    *,
    top_n_words: int,
    n_representative: int,
    min_df: int,
    ngram_max: int,
    keyword_min_coverage: float,
    generic_lift: float,
    keyword_max_patterns: int,
    presence: Presence | None = None,
) -> list[Topic]:
    """c-TF-IDF keywords per cluster from BERTopic, mapped back to our cluster ids.

    Of BERTopic's best ``5 * top_n_words`` c-TF-IDF candidates, those that describe the cluster come first: each in
    at least ``keyword_min_coverage`` of its documents and ``generic_lift`` times as common in it as in the other
    documents. A candidate is also its cluster's own only if each of its words is (:func:`owners`): among the
    ``keyword_max_patterns`` clusters, of all that list the word as a candidate, in which it is most concentrated.
    The order is: describing and own, own, describing, the rest; each group in c-TF-IDF order. Of that order the
    first ``top_n_words`` that add a word are kept (:func:`distinct`): a bigram of two words already listed does not
    take a place.

    Args:
        docs: one text per issue.
        embeddings: the issues' embeddings, one row per doc.
        labels: our cluster id per doc (-1 noise; noise documents still shape the IDF).
        min_df: topics (not issues) a word must occur in: c-TF-IDF vectorizes one joined document per topic.
        presence: the documents' :class:`Presence`, when the caller has it already.

    Raises:
        TopicsInputError: the lengths differ or there are no documents.
    """
    from bertopic import BERTopic
    from bertopic.cluster import BaseCluster
    from bertopic.dimensionality import BaseDimensionalityReduction
    from sklearn.feature_extraction.text import CountVectorizer

    labels_arr = np.asarray(labels, dtype=int)
    if not len(docs) or len(docs) != len(embeddings) or len(docs) != len(labels_arr):
        raise TopicsInputError(
            f"need as many documents, embeddings and labels (>0), got {len(docs)}, {len(embeddings)}, {len(labels_arr)}"
        )
    clusters = sorted(set(labels_arr.tolist()) - {NOISE})
    if not clusters:
        return []
    presence = presence if presence is not None else Presence(docs)
    topic_count = len(set(labels_arr.tolist()))
    model = BERTopic(
        embedding_model=None,
        # not "english": its preprocessing deletes every character but letters, digits and spaces before the
        # vectorizer sees a document, so "tf.get_default_graph" became the keyword "tfgetdefaultgraph" and "0.4.1"
        # "041", words no text holds (coherence scored them -1). The vectorizer's own tokens are the words
        # Presence counts: "tf", "get_default_graph"; a version's digits fall away.
        language=None,
        umap_model=BaseDimensionalityReduction(),
        hdbscan_model=BaseCluster(),
        vectorizer_model=CountVectorizer(
            stop_words="english", min_df=min(min_df, topic_count), ngram_range=(1, ngram_max)
        ),
        top_n_words=top_n_words * 5,  # candidates, ordered and thinned below
        calculate_probabilities=False,
    )
    model.fit_transform(list(docs), embeddings=np.asarray(embeddings, dtype=np.float32), y=labels_arr)
    mapping = model.topic_mapper_.get_mappings(original_topics=True)
    reps = representatives(np.asarray(embeddings, dtype=np.float32), labels_arr, n_representative)
    candidates = {
        cluster: [(w, float(s)) for w, s in (model.get_topic(mapping[cluster]) or []) if w] for cluster in clusters
    }
    own = owners(candidates, labels_arr, presence, keyword_max_patterns)
    topics = []
    for cluster in clusters:
        inside = labels_arr == cluster
        ordered = sorted(  # stable: c-TF-IDF order within each group
            candidates[cluster],
            key=lambda c: (
                not all(cluster in own[t] for t in c[0].lower().split()),
                not _describes(presence(c[0]), inside, keyword_min_coverage, generic_lift),
            ),
        )
        words = [ordered[i] for i in distinct([w for w, _ in ordered], top_n_words)]
        keywords = [w for w, _ in words]
        topics.append(
            Topic(
                cluster,
                short_label(keywords),
                keywords,
                [s for _, s in words],
                reps[cluster],
                int((labels_arr == cluster).sum()),
                [candidates[cluster][i][0] for i in distinct([w for w, _ in candidates[cluster]], top_n_words)],
            )
        )
    return topics


def full_texts(tables: ArrowTables, frame: pd.DataFrame) -> list[str]:
    """Title and body of each issue of ``frame`` (its ``repository`` and ``number``), in its order: the issues' own
    words, before summaries and masking, for coherence as readers of the issues would count it."""
    issues = tables.read(SILVER_ISSUES, columns=["repository", "number", "title", "body"]).to_pandas()
    texts = frame[["repository", "number"]].merge(issues, on=["repository", "number"], how="left")
    return (texts["title"].fillna("") + "\n" + texts["body"].fillna("")).tolist()


def load_documents(tables: ArrowTables, cfg, run_id: str) -> tuple[pd.DataFrame, np.ndarray, dict[str, int]]:
    """The run's clustered issues with the text that was embedded (project-only words removed; the summary's field
    labels too, :func:`~issuerisk.summarizers.without_field_labels`) and its vector.

    Issues without a current vector are left out and counted.
    """
    issues, missing_silver = run_issues(tables, run_id)
    keys, vectors = load_current_vectors(tables, cfg, with_text=True)
    docs = keys.to_pandas().assign(row=np.arange(keys.num_rows))
    docs["text"] = docs["text"].map(without_field_labels)
    frame = issues.merge(docs, on=["repository", "number"], how="inner")
    return (
        frame.reset_index(drop=True),
        vectors[frame["row"].to_numpy()],
        {"missing_from_silver": missing_silver, "missing_embedding": int(len(issues) - len(frame))},
    )


def describe(
    cfg,
    tables: ArrowTables,
    frame: pd.DataFrame,
    vectors: np.ndarray,
    topics: Sequence[Topic],
    generic: dict[int, list[str]],
) -> tuple[dict, dict]:
    """Readable names (from project-word-free titles, else specific keywords; with the share of the cluster's issues,
    title and embedded text, that each name describes) and fault categories of the topics' clusters."""
    if not topics:
        return {}, {}
    words = project_words(tables, cfg)
    titles: dict[int, list[str]] = {}
    documents: dict[int, list[str]] = {}
    for cluster, repository, title, text in zip(
        frame["cluster"], frame["repository"], frame["title"].fillna(""), frame["text"].fillna("")
    ):
        if cluster != NOISE:
            masked = mask(title, repository_words(repository) | words.get(repository, set()))
            titles.setdefault(int(cluster), []).append(masked)
            documents.setdefault(int(cluster), []).append(f"{masked}\n{text}")
    names = readable_names(
        titles, {t.cluster: t.keywords for t in topics}, cfg.topics.name_min_coverage, documents, generic
    )
    described = embed_texts(cfg, list(cfg.topics.categories.values()))
    centroids = {t.cluster: vectors[t.representative].mean(axis=0) for t in topics}
    categories = map_categories(centroids, dict(zip(cfg.topics.categories, described)), cfg.topics.category_threshold)
    return names, categories


def identify(
    tables: ArrowTables,
    run_id: str,
    frame: pd.DataFrame,
    vectors: np.ndarray,
    topics: Sequence[Topic],
    min_score: float,
) -> tuple[dict[int, str], str | None]:
    """Pattern ids of this run's clusters, matched to the newest earlier run that has them (see
    :mod:`issuerisk.analysis.identity`)."""
    earlier = tables.read(GOLD_TOPICS, columns=["run_id", "cluster", "pattern_id"]).to_pandas()
    earlier = earlier[(earlier["run_id"] < run_id) & earlier["pattern_id"].notna()]
    clusters = [t.cluster for t in topics]
    if earlier.empty:
        return pattern_ids({}, {}, clusters, run_id), None
    previous = str(earlier["run_id"].max())
    earlier = earlier[earlier["run_id"] == previous]
    old = run_rows(tables, GOLD_CLUSTERS, previous, ["repository", "number", "cluster"])
    old = old[old["cluster"] != NOISE]
    row_of = {(r, int(n)): i for i, (r, n) in enumerate(zip(frame["repository"], frame["number"]))}
    members = {int(c): {(r, int(n)) for r, n in zip(g["repository"], g["number"])} for c, g in old.groupby("cluster")}
    centroids = {
        c: vectors[[row_of[k] for k in m if k in row_of]].mean(axis=0)
        for c, m in members.items()
        if any(k in row_of for k in m)
    }
    current = {
        t.cluster: {
            (r, int(n)) for r, n, c in zip(frame["repository"], frame["number"], frame["cluster"]) if c == t.cluster
        }
        for t in topics
    }
    now = {t.cluster: vectors[frame["cluster"].to_numpy() == t.cluster].mean(axis=0) for t in topics}
    matched = match(members, centroids, current, now, min_score)
    return pattern_ids(
        matched, dict(zip(earlier["cluster"].astype(int), earlier["pattern_id"])), clusters, run_id
    ), previous


def embed_texts(cfg, texts: list[str]) -> np.ndarray:
    """A few texts embedded here with the configured model (the category descriptions; a second or two on a CPU)."""
    from issuerisk.encoding.encoders import build_encoder, encoder_spec

    return build_encoder(encoder_spec(cfg.embed)).encode(texts) if texts else np.zeros((0, 1), np.float32)


def run(ctx: Context, run_id: str | None = None) -> dict[str, Any]:
    """Fit topics on one clustering run (default: the latest) and replace its ``gold_topics`` rows.

    Raises:
        NoClusteringError: no clustering run, or the given one has no rows.
    """
    tables = ctx.lake.arrow
    run_id = clustering_run(tables, resolve_run_id(tables, run_id))  # of the clusters, whichever grading is named
    frame, vectors, counts = load_documents(tables, ctx.cfg, run_id)
    conf = ctx.cfg.topics
    presence = Presence(frame["text"].tolist())
    topics = (
        fit_topics(
            frame["text"].tolist(),
            vectors,
            frame["cluster"].to_numpy(),
            top_n_words=conf.top_n_words,
            n_representative=conf.n_representative,
            min_df=conf.min_df,
            ngram_max=conf.ngram_max,
            keyword_min_coverage=conf.keyword_min_coverage,
            generic_lift=conf.generic_lift,
            keyword_max_patterns=conf.keyword_max_patterns,
            presence=presence,
        )
        if len(frame)
        else []
    )
    urls, titles = frame["html_url"].tolist(), frame["title"].fillna("").tolist()
    stability = frame.groupby("cluster")["stability"].first().to_dict() if "stability" in frame else {}
    broad = breadth(
        vectors,
        frame["cluster"].to_numpy(),
        {t.cluster: t.ranked for t in topics},
        presence,
        generic_lift=conf.generic_lift,
        top_n=conf.top_n_words,
    )
    generic = {c: b.generic_keywords for c, b in broad.items()}
    names, categories = describe(ctx.cfg, tables, frame, vectors, topics, generic)
    rows = [
        {
            "run_id": run_id,
            "cluster": t.cluster,
            "label": t.label,
            "keywords": t.keywords,
            "weights": t.weights,
            "representative": [urls[i] for i in t.representative],
            "representative_titles": [titles[i] for i in t.representative],
            "n": t.n,
            "name": names[t.cluster][0],
            "name_source": names[t.cluster][1],
            "name_coverage": names[t.cluster][2],
            "stability": optional_float(stability.get(t.cluster)),
            "category": categories[t.cluster][0],
            "category_similarity": categories[t.cluster][1],
            "cohesion": broad[t.cluster].cohesion,
            "spread": broad[t.cluster].spread,
            "generic_keywords": broad[t.cluster].generic_keywords,
            "generic_share": broad[t.cluster].generic_share,
            "keyword_npmi": broad[t.cluster].npmi,
        }
        for t in topics
    ]
    ids, previous = identify(tables, run_id, frame, vectors, topics, ctx.cfg.topics.pattern_min_score)
    for row in rows:
        row["pattern_id"] = ids.get(row["cluster"])
    tables.merge(GOLD_TOPICS, run_table(GOLD_TOPICS, rows), how="replace_run", run_id=run_id)
    coherence = npmi([t.keywords for t in topics], presence, conf.top_n_words)
    coherence_full = npmi([t.keywords for t in topics], Presence(full_texts(tables, frame)), conf.top_n_words)
    spread = diversity([t.keywords for t in topics], conf.top_n_words)
    tables.merge(
        GOLD_QUALITY,
        run_table(
            GOLD_QUALITY,
            [
                {
                    "run_id": run_id,
                    "measure": "npmi",
                    "value": coherence,
                    "detail": f"mean NPMI of the top {conf.top_n_words} keywords over the embedded texts",
                },
                {
                    "run_id": run_id,
                    "measure": "npmi_full_text",
                    "value": coherence_full,
                    "detail": f"mean NPMI of the top {conf.top_n_words} keywords over the issues' titles and bodies",
                },
                {
                    "run_id": run_id,
                    "measure": "diversity",
                    "value": spread,
                    "detail": f"share of distinct words among the top {conf.top_n_words} keywords",
                },
                {
                    "run_id": run_id,
                    "measure": "patterns_matched",
                    "value": float(sum(1 for c, i in ids.items() if not i.startswith(f"{run_id}:"))),
                    "detail": f"clusters that kept the pattern id of run {previous}"
                    if previous
                    else "no earlier run to match",
                },
            ],
        ),
    )
    table(
        f"Topics of run {run_id}",
        ["cluster", "n", "name", "category", "keywords"],
        [
            (t.cluster, t.n, names[t.cluster][0], categories[t.cluster][0], ", ".join(t.keywords[:5]))
            for t in sorted(topics, key=lambda t: -t.n)[:20]
        ],
    )
    return {
        "run_id": run_id,
        "topics": len(topics),
        "documents": len(frame),
        "npmi": coherence,
        "npmi_full_text": coherence_full,
        "diversity": spread,
        "patterns_matched_to": previous,
        **counts,
    }


STAGE = Stage(
    "topics",
    "BERTopic keywords and representative issues per cluster into gold_topics",
    run,
    reads=(
        GOLD_CLUSTERS.name,
        SILVER_ISSUES.name,
        GOLD_EMBEDDINGS.name,
        SILVER_SUMMARIES.name,
        SILVER_PROJECT_TERMS.name,
        GOLD_TOPICS.name,
    ),
    writes=(GOLD_TOPICS.name, GOLD_QUALITY.name),
    options=(RUN_ID,),
    sections=("topics",),
    warm=preload("topics", "bertopic"),  # 5 s of imports (sentence-transformers, torch) off the critical path
)
