"""Are the graded patterns defect patterns that recur across projects? Measured on real issues, before and after.

Run ``.venv/bin/python -m bench.quality`` (``--issues 3000``, ``--runs 20``). Whole
repositories of ``../shared/data/lai2024-ml-issues`` are taken in a seeded order
until about ``--issues`` issues, and it prints:

1. the issue-kind classifier's repository-grouped 5-fold report on every labelled issue of the corpus
   (macro-F1 over defect/feature/question, per-class precision and recall, 5-kind macro-F1; text features only);
2. repository dominance (share of clusters, and of clustered issues, in clusters where one repository holds
   the majority) and the share of clusters whose top keywords name a failure, for the old pipeline (rules r1
   summaries, nothing masked, one seeded run) and the new one (rules r2, project-only words masked, consensus);
3. the summary comparison of issue 16 point 4: the same consensus clustering of the defect issues with r1 and
   r2 summaries: failure-keyword share and mean cluster stability;
4. the new pipeline's grading: the defect share (classifier and labels) of the top-10 graded clusters and how
   many clusters were excluded, by reason.

No model is tuned on these figures; the classifier is evaluated on repositories it never saw.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import time
from collections import Counter

import numpy as np
import pandas as pd

from bench.stability import OUT, REAL_ISSUES, embeddings, read_repository

FAILURE_WORDS = frozenset(
    "error errors exception crash crashes segfault nan inf memory oom cuda gpu shape shapes dtype mismatch install "
    "installation "
    "import importerror fail fails failed failure hang hangs slow leak deadlock broken runtimeerror valueerror "
    "typeerror "
    "attributeerror keyerror indexerror modulenotfounderror oserror assertionerror traceback segmentation killed core "
    "dumped "
    "incompatible version versions dll loss".split()
)


def repositories_sample(issues: int, seed: int = 0) -> list[dict]:
    """Every issue (no pull requests) of whole repositories taken in a seeded order until ``issues`` are reached."""
    files = sorted(REAL_ISSUES.glob("*.jsonl.gz"))
    random.Random(seed).shuffle(files)
    rows: list[dict] = []
    for file in files:
        repository, objects = read_repository(file)
        rows += [_row(repository, obj) for obj in objects]
        if len(rows) >= issues:
            break
    return rows


def _row(repository: str, obj: dict) -> dict:
    created, closed = obj.get("created_at"), obj.get("closed_at")
    hours = None
    if obj.get("state") == "closed" and closed:
        hours = (pd.Timestamp(closed) - pd.Timestamp(created)).total_seconds() / 3600
    return {
        "repository": repository,
        "number": obj["number"],
        "title": obj.get("title") or "",
        "body": obj.get("body") or "",
        "labels": [lab.get("name") if isinstance(lab, dict) else str(lab) for lab in obj.get("labels") or []],
        "is_closed": hours is not None,
        "resolution_hours": hours,
        "created_at": created,
        "updated_at": obj.get("updated_at"),
    }


def corpus() -> list[dict]:
    rows = []
    for file in sorted(REAL_ISSUES.glob("*.jsonl.gz")):
        repository, objects = read_repository(file)
        rows += [_row(repository, obj) for obj in objects]
    return rows


def classifier_report(rows: list[dict]) -> tuple[list[list], dict]:
    """Grouped 5-fold evaluation of the kind classifier on every labelled issue (text features), and kinds for all."""
    from issuerisk.analysis.kinds import (
        CORE_KINDS,
        compile_label_patterns,
        grouped_evaluation,
        kind_of_labels,
        predict,
        train,
    )
    from issuerisk.conf.settings import KIND_LABEL_PATTERNS, KINDS

    patterns = compile_label_patterns(KIND_LABEL_PATTERNS)
    kinds = [kind_of_labels(r["labels"], patterns) for r in rows]
    labelled = [i for i, k in enumerate(kinds) if k]
    texts = [(rows[i]["title"], rows[i]["body"]) for i in labelled]
    y, groups = [kinds[i] for i in labelled], [rows[i]["repository"] for i in labelled]
    t0 = time.perf_counter()
    core = grouped_evaluation(texts, None, y, groups, classes=CORE_KINDS)
    every = grouped_evaluation(texts, None, y, groups, classes=KINDS)
    seconds = time.perf_counter() - t0
    table_rows = [
        [k, round(v["precision"], 3), round(v["recall"], 3), round(v["f1"], 3), v["support"]]
        for k, v in core["pooled"]["per_class"].items()
    ]
    table_rows += [
        [
            "macro-F1 defect/feature/question (folds: "
            + ", ".join(f"{f['macro_f1_core']:.3f}" for f in core["folds"])
            + ")",
            "",
            "",
            round(core["pooled"]["macro_f1_core"], 3),
            len(y),
        ],
        ["macro-F1, 5 kinds", "", "", round(every["pooled"]["macro_f1"], 3), ""],
        [f"({len(set(groups))} repositories, {seconds:.0f} s)", "", "", "", ""],
    ]
    model = train(texts, None, y)
    todo = [i for i, k in enumerate(kinds) if k is None]
    predicted, _ = predict(model, [(rows[i]["title"], rows[i]["body"]) for i in todo])
    full = list(kinds)
    for i, k in zip(todo, predicted):
        full[i] = k
    return table_rows, {(rows[i]["repository"], rows[i]["number"]): (full[i], kinds[i]) for i in range(len(rows))}


def texts_of(rows: list[dict], rules: str, masked: bool, everything: list[dict]) -> list[str]:
    from bench.stability import pipeline_texts

    return pipeline_texts(rows, everything, rules=rules, masked=masked)


def clusters(vectors: np.ndarray, method: str, runs: int, seed: int = 42) -> tuple[np.ndarray, np.ndarray | None]:
    """(labels, per-cluster stability or None) with the pipeline's defaults (``single`` or ``consensus``)."""
    from bench.stability import consensus_labels
    from issuerisk.clustering.backends import CpuBackend, single_run
    from issuerisk.conf.settings import ClusterConfig

    params = ClusterConfig()
    backend = CpuBackend()
    prepared = backend.prepare(vectors, params)
    if method == "single":
        return single_run(backend, prepared, params, seed, with_coords=False).labels, None
    labels, stability, _ = consensus_labels(prepared, params, [seed + i for i in range(runs)])
    return labels, stability


def keywords(docs: list[str], vectors: np.ndarray, labels: np.ndarray) -> dict[int, list[str]]:
    from issuerisk.analysis.topics import fit_topics
    from issuerisk.conf.settings import TopicsConfig

    conf = TopicsConfig()
    return {
        t.cluster: t.keywords
        for t in fit_topics(
            docs,
            vectors,
            labels,
            top_n_words=conf.top_n_words,
            n_representative=conf.n_representative,
            min_df=conf.min_df,
            ngram_max=conf.ngram_max,
            keyword_min_coverage=conf.keyword_min_coverage,
            generic_lift=conf.generic_lift,
            keyword_max_patterns=conf.keyword_max_patterns,
        )
    }


def failure_share(topic_words: dict[int, list[str]], top: int = 5) -> float:
    """Share of clusters with a failure word among their top keywords."""
    named = [
        any(w in FAILURE_WORDS for k in words[:top] for w in re.split(r"\W+", k.lower()))
        for words in topic_words.values()
    ]
    return float(np.mean(named)) if named else 0.0


def dominance(rows: list[dict], labels: np.ndarray) -> tuple[float, float]:
    """(share of clusters, share of clustered issues in them) where one repository holds the majority of a cluster."""
    frame = pd.DataFrame({"repository": [r["repository"] for r in rows], "cluster": labels})
    frame = frame[frame["cluster"] >= 0]
    if frame.empty:
        return 0.0, 0.0
    top = frame.groupby("cluster")["repository"].agg(lambda s: s.value_counts(normalize=True).iloc[0])
    dominated = top[top > 0.5].index
    return float(len(dominated) / len(top)), float(frame["cluster"].isin(dominated).mean())


def grading(
    rows: list[dict], labels: np.ndarray, stability: np.ndarray, kinds: dict, names: dict[int, list[str]]
) -> tuple[list[list], Counter]:
    """The new pipeline's risk grading of the clusters (all frameworks): top-10 graded and exclusions by reason."""
    from issuerisk.analysis.risk import cluster_facts, exclusion
    from issuerisk.conf.settings import RiskConfig
    from issuerisk.grading.matrix import assess, severity

    rules = RiskConfig()
    frame = pd.DataFrame(rows).assign(cluster=labels)
    frame["kind"] = [kinds[(r["repository"], r["number"])][0] for r in rows]
    frame["label_kind"] = [kinds[(r["repository"], r["number"])][1] for r in rows]
    frame["stability"] = [stability[c] if c >= 0 else np.nan for c in labels]
    snapshot = pd.to_datetime(frame["updated_at"], utc=True).max()
    frame["open_hours"] = ((snapshot - pd.to_datetime(frame["created_at"], utc=True)).dt.total_seconds() / 3600).clip(
        lower=0
    )
    frame = frame[frame["cluster"] >= 0]
    facts = {int(c): cluster_facts(g) for c, g in frame.groupby("cluster")}
    reasons = {c: exclusion(c, " ".join(names.get(c, [])), f, f, rules) for c, f in facts.items()}
    graded = assess(frame, [c for c, r in reasons.items() if r], rules.impact_measure, rules.impact_horizon_days * 24)
    top = sorted((r for r in graded if r.grade), key=lambda r: (-severity(r.grade), -r.n))[:10]
    table_rows = [
        [
            r.cluster,
            ", ".join(names.get(r.cluster, [])[:4]),
            r.n,
            r.grade,
            round(facts[r.cluster].defect_share or 0, 2),
            None if facts[r.cluster].label_defect_share is None else round(facts[r.cluster].label_defect_share, 2),
            facts[r.cluster].repositories,
            round(facts[r.cluster].top_repository_share, 2),
        ]
        for r in top
    ]
    excluded = Counter(reason.split(":")[0] for reason in reasons.values() if reason)
    return table_rows, excluded


def main(argv: list[str] | None = None) -> None:
    from issuerisk.clustering.backends import enable_jit_cache
    from issuerisk.display import table

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--issues", type=int, default=3000, help="issues of whole repositories to cluster")
    p.add_argument("--runs", type=int, default=20, help="member runs of the consensus")
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    enable_jit_cache(str(OUT / "numba"))
    everything = corpus()
    t0 = time.perf_counter()
    report, kinds = classifier_report([r for r in everything])
    table(
        "1. issue-kind classifier, repository-grouped 5-fold (no repository in both training and test)",
        ["kind", "precision", "recall", "F1", "issues"],
        report,
    )
    rows = repositories_sample(args.issues)
    print(
        f"{len(rows):,} issues of {len({r['repository'] for r in rows})} whole repositories "
        f"({time.perf_counter() - t0:.0f} s so far)",
        flush=True,
    )

    variants = {
        "before: r1 summaries, nothing masked, one seeded run": ("r1", False, "single"),
        "after: r2 summaries, project words masked, consensus": ("r2", True, "consensus"),
    }
    results = {}
    lines = []
    for name, (rules, masked, method) in variants.items():
        docs = texts_of(rows, rules, masked, everything)
        vectors = embeddings(docs)
        labels, stability = clusters(vectors, method, args.runs)
        words = keywords(docs, vectors, labels)
        share, issues_share = dominance(rows, labels)
        results[name] = (labels, stability, words)
        lines.append(
            [
                name,
                int(labels.max() + 1),
                round(float(np.mean(labels < 0)), 3),
                f"{share:.0%}",
                f"{issues_share:.0%}",
                f"{failure_share(words):.0%}",
            ]
        )
    table(
        "2. repository dominance and failure keywords (all issues of the sampled repositories)",
        [
            "pipeline",
            "clusters",
            "noise",
            "clusters one repository dominates",
            "issues in them",
            "clusters whose top-5 keywords name a failure",
        ],
        lines,
    )

    defect = [r for r in rows if kinds[(r["repository"], r["number"])][0] == "defect"]
    lines = []
    for rules in ("r1", "r2"):
        docs = texts_of(defect, rules, True, everything)
        vectors = embeddings(docs)
        labels, stability = clusters(vectors, "consensus", args.runs)
        lines.append(
            [
                f"{rules} summaries",
                len(defect),
                int(labels.max() + 1),
                round(float(np.mean(labels < 0)), 3),
                f"{failure_share(keywords(docs, vectors, labels)):.0%}",
                round(float(np.nanmean(stability)), 3) if len(stability) else None,
            ]
        )
    table(
        "3. summaries that describe the failure: the same consensus clustering of the defect issues",
        [
            "summaries",
            "defect issues",
            "clusters",
            "noise",
            "clusters whose top-5 keywords name a failure",
            "mean cluster stability",
        ],
        lines,
    )

    labels, stability, words = results["after: r2 summaries, project words masked, consensus"]
    top, excluded = grading(rows, labels, stability, kinds, words)
    table(
        "4. new pipeline: the top-10 graded clusters (all frameworks)",
        [
            "cluster",
            "keywords",
            "n",
            "grade",
            "defect share (classifier)",
            "defect share (labels)",
            "repositories",
            "top repository share",
        ],
        top,
    )
    table("4. clusters not graded, by reason", ["reason", "clusters"], sorted(excluded.items()))
    print(f"bench.quality: {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
