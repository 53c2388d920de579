"""Stage ``topics``: BERTopic keywords, a short label and representative issues per cluster.

BERTopic is fitted on the run's precomputed embeddings with our HDBSCAN labels
passed as ``y`` through pass-through sub-models (``BaseDimensionalityReduction``,
``BaseCluster``), so it never clusters again and never embeds: no embedding
model is given and none is downloaded. BERTopic renumbers topics by size; its
``topic_mapper_`` maps them back to our cluster ids. The documents are the
summaries that were embedded (the text the clusters were built from).
Representative issues are the ones whose embeddings lie closest to their
cluster's centroid, the same vectors the clustering saw.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.compute as pc

from issuerisk.analysis.gold import resolve_run_id, run_issues, run_table
from issuerisk.constants import NOISE
from issuerisk.display import table
from issuerisk.lakehouse import ArrowTables
from issuerisk.schemas.ml import GOLD_EMBEDDINGS
from issuerisk.schemas.risk import GOLD_TOPICS
from issuerisk.schemas.summaries import SILVER_SUMMARIES
from issuerisk.stage import RUN_ID, Stage


class TopicsInputError(ValueError):
    """Documents, embeddings and labels do not line up."""


@dataclass(frozen=True)
class Topic:
    """Keywords of one of our clusters and the positions of its most representative documents."""

    cluster: int
    label: str
    keywords: list[str]
    weights: list[float]
    representative: list[int]
    n: int


def short_label(keywords: Sequence[str], size: int = 3) -> str:
    """The first ``size`` keywords that add a word not already in the label, joined by ' / '."""
    chosen: list[str] = []
    seen: set[str] = set()
    for word in keywords:
        tokens = set(word.split())
        if tokens <= seen:
            continue
        chosen.append(word)
        seen |= tokens
        if len(chosen) == size:
            break
    return " / ".join(chosen)


def representatives(embeddings: np.ndarray, labels: np.ndarray, k: int) -> dict[int, list[int]]:
    """Per cluster (noise excluded) the positions of the ``k`` embeddings most cosine-similar to its centroid."""
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    unit = embeddings / np.where(norms == 0, 1.0, norms)
    result = {}
    for cluster in sorted(set(labels.tolist()) - {NOISE}):
        members = np.flatnonzero(labels == cluster)
        centroid = unit[members].mean(axis=0)
        scores = unit[members] @ centroid
        order = np.lexsort((members, -scores))
        result[int(cluster)] = members[order[:k]].tolist()
    return result


def fit_topics(docs: Sequence[str], embeddings: np.ndarray, labels: Sequence[int], *, top_n_words: int,
               n_representative: int, min_df: int, ngram_max: int) -> list[Topic]:
    """c-TF-IDF keywords per cluster from BERTopic, mapped back to our cluster ids.

    Args:
        docs: one text per issue.
        embeddings: the issues' embeddings, one row per doc.
        labels: our cluster id per doc (-1 noise; noise documents still shape the IDF).
        min_df: topics (not issues) a word must occur in: c-TF-IDF vectorizes one joined document per topic.

    Raises:
        TopicsInputError: the lengths differ or there are no documents.
    """
    from bertopic import BERTopic
    from bertopic.cluster import BaseCluster
    from bertopic.dimensionality import BaseDimensionalityReduction
    from sklearn.feature_extraction.text import CountVectorizer

    labels_arr = np.asarray(labels, dtype=int)
    if not len(docs) or len(docs) != len(embeddings) or len(docs) != len(labels_arr):
        raise TopicsInputError(f"need as many documents, embeddings and labels (>0), got {len(docs)}, {len(embeddings)}, {len(labels_arr)}")
    clusters = sorted(set(labels_arr.tolist()) - {NOISE})
    if not clusters:
        return []
    topic_count = len(set(labels_arr.tolist()))
    model = BERTopic(
        embedding_model=None,
        umap_model=BaseDimensionalityReduction(),
        hdbscan_model=BaseCluster(),
        vectorizer_model=CountVectorizer(stop_words="english", min_df=min(min_df, topic_count), ngram_range=(1, ngram_max)),
        top_n_words=top_n_words,
        calculate_probabilities=False,
    )
    model.fit_transform(list(docs), embeddings=np.asarray(embeddings, dtype=np.float32), y=labels_arr)
    mapping = model.topic_mapper_.get_mappings(original_topics=True)
    reps = representatives(np.asarray(embeddings, dtype=np.float32), labels_arr, n_representative)
    topics = []
    for cluster in clusters:
        words = [(w, float(s)) for w, s in (model.get_topic(mapping[cluster]) or []) if w]
        keywords = [w for w, _ in words]
        topics.append(Topic(cluster, short_label(keywords), keywords, [s for _, s in words], reps[cluster], int((labels_arr == cluster).sum())))
    return topics


def load_documents(tables: ArrowTables, run_id: str) -> tuple[pd.DataFrame, dict[str, int]]:
    """The run's clustered issues with their embedding and embedded summary.

    Issues without an embedding of the clustering's model are left out and
    counted; issues without a summary row fall back to their title.
    """
    issues, missing_silver = run_issues(tables, run_id)
    models = sorted(m for m in issues["model"].dropna().unique())
    emb = tables.read(GOLD_EMBEDDINGS, columns=["repository", "number", "model", "summary_key", "vector"],
                      filters=pc.field("model").isin(models))
    summaries = tables.read(SILVER_SUMMARIES, columns=["cache_key", "summary"],
                            filters=pc.field("cache_key").isin(emb.column("summary_key"))).to_pandas()
    vectors = emb.to_pandas().merge(summaries, left_on="summary_key", right_on="cache_key", how="left")
    frame = issues.merge(vectors[["repository", "number", "model", "vector", "summary"]], on=["repository", "number", "model"], how="left")
    no_vector = frame["vector"].isna()
    frame = frame[~no_vector].reset_index(drop=True)
    no_summary = frame["summary"].isna()
    frame["doc"] = frame["summary"].where(~no_summary, frame["title"].fillna(""))
    return frame, {"missing_from_silver": missing_silver, "missing_embedding": int(no_vector.sum()), "title_fallback": int(no_summary.sum())}


def run(ctx, run_id: str | None = None) -> dict[str, Any]:
    """Fit topics on one clustering run (default: the latest) and replace its ``gold_topics`` rows.

    Raises:
        NoClusteringError: no clustering run, or the given one has no rows.
    """
    tables = ctx.lake.arrow
    run_id = resolve_run_id(tables, run_id)
    ctx.run.read("gold_clusters", "silver_issues", "gold_embeddings", "silver_summaries")
    frame, counts = load_documents(tables, run_id)
    conf = ctx.cfg.topics
    topics = fit_topics(
        frame["doc"].tolist(), np.stack(frame["vector"].to_numpy()), frame["cluster"].to_numpy(),
        top_n_words=conf.top_n_words, n_representative=conf.n_representative, min_df=conf.min_df, ngram_max=conf.ngram_max,
    ) if len(frame) else []
    urls = frame["html_url"].tolist()
    rows = [
        {"run_id": run_id, "cluster": t.cluster, "label": t.label, "keywords": t.keywords, "weights": t.weights,
         "representative": [urls[i] for i in t.representative], "n": t.n}
        for t in topics
    ]
    tables.merge(GOLD_TOPICS, run_table(GOLD_TOPICS, rows), how="replace_run", run_id=run_id)
    ctx.run.wrote(GOLD_TOPICS.name)
    table(f"Topics of run {run_id}", ["cluster", "n", "label", "keywords"],
          [(t.cluster, t.n, t.label, ", ".join(t.keywords[:6])) for t in sorted(topics, key=lambda t: -t.n)[:20]])
    return {"run_id": run_id, "topics": len(topics), "documents": len(frame), **counts}


STAGE = Stage(
    "topics", "BERTopic keywords and representative issues per cluster into gold_topics", run,
    reads=("gold_clusters", "silver_issues", GOLD_EMBEDDINGS.name, SILVER_SUMMARIES.name), writes=(GOLD_TOPICS.name,), options=(RUN_ID,),
)
