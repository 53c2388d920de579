"""Topics on synthetic clusters: BERTopic's keywords land on our cluster ids, and the stage writes gold_topics.

Every issue, summary, embedding and cluster label here is synthetic, built by
:func:`seed_run` (also used by the risk, comparison and report tests).
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

import numpy as np
import pytest

from issuerisk.analysis.topics import TopicsInputError, distinct, fit_topics, owners, short_label
from issuerisk.clustering.centroids import representatives
from issuerisk.clustering.quality import Presence
from issuerisk.conf.settings import EmbedConfig

RUN_ID = "20260101T000000Z-synthetic"
MODEL = EmbedConfig().key  # what gold_embeddings.model records for the default config
THEMES = {
    0: ("cuda out of memory gpu allocation", "pytorch"),
    1: ("keras layer input shape mismatch", "keras"),
    2: ("pip install wheel version conflict", "tensorflow"),
}
# cluster -> (count per framework, resolution hours of closed issues, issues left open); cluster 0 is the smallest.
PLAN = {
    0: ({"pytorch": 6, "tensorflow": 1, "keras": 1}, 5.0, 1),
    1: ({"pytorch": 2, "tensorflow": 2, "keras": 10}, 50.0, 2),
    2: ({"pytorch": 3, "tensorflow": 14, "keras": 1}, 500.0, 6),
    -1: ({"pytorch": 2, "tensorflow": 2, "keras": 0}, 1.0, 0),
}


def synthetic_issues(seed: int = 0) -> list[dict]:
    """Synthetic clustered issues following :data:`PLAN` with theme words, vectors near a theme centre and 2-D
    coordinates."""
    rng = np.random.default_rng(seed)
    centres = {c: rng.normal(size=384) * 4 for c in PLAN}  # the size of the configured model's vectors
    rows, number = [], 0
    start = datetime(2024, 1, 1)
    for cluster, (per_framework, hours, left_open) in PLAN.items():
        total = sum(per_framework.values())
        words = THEMES.get(cluster, ("random question about something", ""))[0].split()
        k = 0
        for framework, count in per_framework.items():
            for _ in range(count):
                number += 1
                closed = k >= left_open
                text = " ".join(rng.choice(words, size=6)) + f" report {number}"
                vec = centres[cluster] + rng.normal(size=384)
                rows.append(
                    {
                        "repository": f"synthetic/{framework}-repo-{number % 3}",
                        "number": number,
                        "cluster": cluster,
                        "framework": framework,
                        "title": text[:40],
                        "summary": text,
                        "vector": (vec / np.linalg.norm(vec)).astype(np.float32).tolist(),
                        "is_closed": closed,
                        "resolution_hours": hours + k if closed else None,
                        "created_at": start,
                        "closed_at": start + timedelta(hours=hours + k) if closed else None,
                        "x": float(cluster * 5 + rng.normal()),
                        "y": float(rng.normal()),
                        "html_url": f"https://github.com/synthetic/{framework}-repo-{number % 3}/issues/{number}",
                    }
                )
                k += 1
        assert k == total
    return rows


def seed_run(ctx, run_id: str = RUN_ID, rows: list[dict] | None = None, finished: bool = True) -> list[dict]:
    """Write synthetic silver_issues, silver_summaries, gold_embeddings and gold_clusters rows for one run (through
    Spark),
    and, when ``finished``, the ledger row of the clustering command that wrote them, succeeded.

    The embeddings are keyed by the texts the embed stage would embed (:func:`issuerisk.vectors.current_texts`).
    """
    from issuerisk.schemas.gold import GOLD_CLUSTERS, GOLD_EMBEDDINGS
    from issuerisk.schemas.silver import SILVER_ISSUES, SILVER_SUMMARIES
    from issuerisk.summarizers import identity_of
    from issuerisk.vectors import current_texts

    rows = synthetic_issues() if rows is None else rows
    summarizer, model, prompt = identity_of(ctx.cfg.summarize)
    silver, summaries, clusters = [], [], []
    for r in rows:
        key = hashlib.sha256(f"{r['repository']}#{r['number']}".encode()).hexdigest()
        silver.append(
            {
                "repository": r["repository"],
                "number": r["number"],
                "title": r["title"],
                "body": r["summary"],
                "state": "closed" if r["is_closed"] else "open",
                "labels": [],
                "user_login": "someone",
                "html_url": r["html_url"],
                "created_at": r["created_at"],
                "updated_at": r["created_at"],
                "closed_at": r["closed_at"],
                "is_closed": r["is_closed"],
                "resolution_hours": r["resolution_hours"],
                "framework": r["framework"],
                "frameworks": [r["framework"]],
                "framework_source": "given",
                "language": "en",
                "language_confidence": 1.0,
                "run_id": run_id,
            }
        )
        summaries.append(
            {
                "cache_key": key,
                "repository": r["repository"],
                "number": r["number"],
                "summarizer": summarizer,
                "model": model,
                "prompt_version": prompt,
                "summary": r["summary"],
                "input_tokens": 0,
                "output_tokens": 0,
                "run_id": run_id,
                "created_at": r["created_at"],
            }
        )
        clusters.append(
            {
                "repository": r["repository"],
                "number": r["number"],
                "cluster": r["cluster"],
                "probability": 1.0,
                "outlier_score": 0.0,
                "x": r["x"],
                "y": r["y"],
                "model": MODEL,
                "run_id": run_id,
            }
        )
    for spec, data in ((SILVER_ISSUES, silver), (SILVER_SUMMARIES, summaries), (GOLD_CLUSTERS, clusters)):
        frame = ctx.spark.createDataFrame([tuple(d.get(n) for n in spec.names) for d in data], spec.spark)
        ctx.lake.spark.merge(spec, frame)
    keys = {
        (r, n): k
        for r, n, k in zip(
            *(
                current_texts(ctx.lake.arrow, ctx.cfg).column(c).to_pylist()
                for c in ("repository", "number", "summary_key")
            )
        )
    }
    embeddings = [
        {
            "repository": r["repository"],
            "number": r["number"],
            "model": MODEL,
            "summary_key": keys[(r["repository"], r["number"])],
            "dim": len(r["vector"]),
            "vector": r["vector"],
            "run_id": run_id,
        }
        for r in rows
    ]
    ctx.lake.spark.merge(
        GOLD_EMBEDDINGS,
        ctx.spark.createDataFrame(
            [tuple(d[n] for n in GOLD_EMBEDDINGS.names) for d in embeddings], GOLD_EMBEDDINGS.spark
        ),
    )
    from issuerisk.ledger import Run

    if finished:
        Run(ctx.cfg, "cluster", run_id=run_id).save("succeeded")
    return rows


KEYWORDS = {"keyword_min_coverage": 0.1, "generic_lift": 2.0, "keyword_max_patterns": 1}


def test_short_label_skips_keywords_already_covered():
    assert short_label(["cuda", "memory", "cuda memory", "gpu", "oom"]) == "cuda / memory / gpu"
    assert short_label([]) == ""


def test_distinct_keeps_only_keywords_that_add_a_word():
    words = ["onnx", "convert", "onnx model", "model onnx", "onnx convert", "", "onnxruntime", "model"]
    assert [words[i] for i in distinct(words, 10)] == ["onnx", "convert", "onnx model", "onnxruntime"]
    assert distinct(words, 2) == [0, 1]


def test_a_word_of_many_clusters_leads_only_where_it_is_most_concentrated():
    """Issue 27.2: "error" is in every cluster's candidates (SYNTHETIC documents); it belongs to the cluster whose
    issues hold it most often (2: all of them), or to the two most concentrated with two owners; a word of one cluster
    is that cluster's own."""
    docs = ["cuda error memory"] * 4 + ["cuda memory"] * 6 + ["shape error"] * 5 + ["shape"] * 5 + ["pip error"] * 10
    labels = np.array([0] * 10 + [1] * 10 + [2] * 10)
    candidates = {0: [("cuda", 1.0), ("error", 0.5)], 1: [("shape error", 1.0)], 2: [("pip", 1.0), ("error", 0.9)]}
    presence = Presence(docs)
    assert owners(candidates, labels, presence, 1) == {"cuda": {0}, "error": {2}, "shape": {1}, "pip": {2}}
    assert owners(candidates, labels, presence, 2)["error"] == {2, 1}
    assert owners(candidates, labels, presence, 3)["error"] == {0, 1, 2}


def test_representatives_are_closest_to_the_centroid():
    emb = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.6, 0.4], [5.0, 5.0]])
    labels = np.array([0, 0, 1, 0, -1])
    assert representatives(emb, labels, 2) == {0: [1, 0], 1: [2]}


def test_fit_topics_rejects_misaligned_inputs():
    with pytest.raises(TopicsInputError, match="as many documents, embeddings and labels"):
        fit_topics(
            ["a", "b"], np.zeros((3, 4)), [0, 0], top_n_words=5, n_representative=1, min_df=1, ngram_max=1, **KEYWORDS
        )


def test_fit_topics_only_noise_gives_no_topic():
    assert (
        fit_topics(
            ["a b", "c d"],
            np.ones((2, 4)),
            [-1, -1],
            top_n_words=5,
            n_representative=1,
            min_df=1,
            ngram_max=1,
            **KEYWORDS,
        )
        == []
    )


def test_fit_topics_maps_bertopic_ids_back_to_our_clusters(monkeypatch):
    import socket

    def no_network(self, address):
        raise AssertionError(f"fit_topics tried to reach {address}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    rows = synthetic_issues()
    emb = np.array([r["vector"] for r in rows], dtype=np.float32)
    topics = fit_topics(
        [r["summary"] for r in rows],
        emb,
        [r["cluster"] for r in rows],
        top_n_words=5,
        n_representative=5,
        min_df=1,
        ngram_max=1,
        **KEYWORDS,
    )
    by_cluster = {t.cluster: t for t in topics}
    assert set(by_cluster) == {0, 1, 2}
    for cluster, (theme, _) in THEMES.items():
        topic = by_cluster[cluster]
        assert set(topic.keywords[:3]) <= set(theme.split()), (cluster, topic.keywords)
        assert topic.weights == sorted(topic.weights, reverse=True)
        assert topic.n == sum(PLAN[cluster][0].values())
        assert len(topic.representative) == 5
        assert all(rows[i]["cluster"] == cluster for i in topic.representative)

    bigrams = fit_topics(
        [r["summary"] for r in rows],
        emb,
        [r["cluster"] for r in rows],
        top_n_words=5,
        n_representative=1,
        min_df=1,
        ngram_max=2,
        **KEYWORDS,
    )
    for topic in bigrams:  # five keywords (and ranked words, which breadth counts), each adding a new word
        for words in (topic.keywords, topic.ranked):
            seen: set[str] = set()
            for keyword in words:
                assert not set(keyword.split()) <= seen, (topic.cluster, words)
                seen |= set(keyword.split())
        assert len(topic.keywords) == 5 and len(topic.weights) == 5


def test_keywords_are_words_the_documents_hold():
    """SYNTHETIC: dotted API names, file names and versions. BERTopic's English preprocessing deleted the dots and
    underscores (keywords "tfgetdefaultgraph", "requirementstxt", "241" that no text holds); every keyword is now a
    word the documents hold, as coherence counts words."""
    docs = (
        [
            f"AttributeError: module tf has no attribute get_default_graph. API: tf.get_default_graph. Env: tensorflow "
            f"2.4.1. Report {i}"
            for i in range(12)
        ]
        + [f"pip install fails to read requirements.txt on torch 1.7.0 wheel. Report {i}" for i in range(12)]
        + [f"Add a colour option to the plot legend. Report {i}" for i in range(12)]
    )
    rng = np.random.default_rng(0)
    labels = [0] * 12 + [1] * 12 + [2] * 12
    emb = (np.eye(8)[labels] + 0.01 * rng.standard_normal((36, 8))).astype(np.float32)
    topics = fit_topics(docs, emb, labels, top_n_words=6, n_representative=1, min_df=1, ngram_max=1, **KEYWORDS)
    held = Presence(docs)
    assert all(held(k).any() for t in topics for k in t.keywords + t.ranked), [t.keywords for t in topics]
    by_cluster = {t.cluster: t.keywords for t in topics}
    assert "get_default_graph" in by_cluster[0] and "requirements" in by_cluster[1]
    assert not {"241", "170", "tfgetdefaultgraph", "requirementstxt"} & {k for t in topics for k in t.keywords}


@pytest.mark.slow
def test_topics_stage_writes_gold_topics_and_replaces_on_rerun(ctx):
    from issuerisk.analysis import topics

    seed_run(ctx)
    first = topics.run(ctx)
    assert first["topics"] == 3 and first["documents"] == len(synthetic_issues())
    assert first["missing_embedding"] == 0
    assert -1 <= first["npmi_full_text"] <= 1  # over the issues' titles and bodies, beside the embedded texts'
    again = topics.run(ctx, RUN_ID)
    assert again["topics"] == 3
    got = {r["cluster"]: r for r in ctx.lake.spark.read("gold_topics").where(f"run_id = '{RUN_ID}'").collect()}
    assert set(got) == {0, 1, 2}
    assert got[2]["n"] == 18 and len(got[2]["representative"]) == 5
    assert all(url.startswith("https://github.com/synthetic/") for url in got[1]["representative"])
    assert got[0]["keywords"][0] in THEMES[0][0].split()
