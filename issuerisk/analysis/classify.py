"""Stage ``classify``: the kind of every silver issue into ``silver_issue_kinds``.

An issue whose own GitHub labels name a kind keeps it (``source`` label). The
others are predicted by a classifier trained on the labelled issues
(:mod:`issuerisk.analysis.kinds`: text features of title and body, plus each
issue's sentence embedding when every silver issue has one), with the
probability of the predicted kind as its confidence (``source`` model). The
classifier is judged first by a repository-grouped K-fold on the labelled
issues (no repository in both training and test): macro-F1 over
defect/feature/question and per-class precision and recall go to the run's
metrics and the report. Model and evaluation are cached on disk by a hash of
their training data and settings, so an unchanged corpus costs nothing the second time.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from issuerisk.analysis.kinds import CORE_KINDS, compile_label_patterns, grouped_evaluation, kind_of_labels, predict, train
from issuerisk.conf.settings import KINDS
from issuerisk.display import table
from issuerisk.schemas.lakehouse import SILVER_ISSUE_KINDS, SILVER_ISSUES
from issuerisk.silver import silver_build
from issuerisk.stage import Stage
from issuerisk.vectors import NoVectorsError, load_current_vectors


def issue_embeddings(ctx, keys: list[tuple[str, int]]) -> tuple[np.ndarray | None, str]:
    """The current vector of every issue in ``keys`` (in order), or None when some issue has none; and why."""
    if not ctx.cfg.kinds.use_embeddings:
        return None, "kinds.use_embeddings is off"
    if ctx.cfg.project.sample_size is not None:
        return None, "a sample is embedded, not every issue"
    try:
        found, vectors = load_current_vectors(ctx.lake.arrow, ctx.cfg)
    except NoVectorsError:
        return None, "nothing embedded yet"
    row = {k: i for i, k in enumerate(zip(found.column("repository").to_pylist(), found.column("number").to_pylist()))}
    missing = sum(1 for k in keys if k not in row)
    if missing:
        return None, f"{missing} silver issues have no current vector"
    return vectors[[row[k] for k in keys]], f"{ctx.cfg.embed.model} vectors of the embedded texts"


def model_id(texts: list[tuple[str, str]], kinds: list[str | None], embedded: bool, cfg) -> str:
    """A hash of the training data (texts and label kinds) and settings: the classifier's identity and cache key."""
    digest = hashlib.sha256()
    for (title, body), kind in zip(texts, kinds):
        digest.update(f"{kind}\x1f{title}\x1f{body}\x1e".encode("utf-8", "surrogatepass"))
    digest.update(json.dumps({"kinds": cfg.kinds.model_dump(mode="json"), "embedded": embedded,
                              "model": cfg.embed.model if embedded else None, "seed": cfg.project.seed}, sort_keys=True).encode())
    return f"kinds-lr-{'emb-' if embedded else ''}{digest.hexdigest()[:16]}"


def fitted(cache: Path, name: str, texts, embeddings, kinds, groups, cfg) -> tuple[Any, dict]:
    """The trained model and its grouped evaluation, from the cache when present."""
    path = cache / f"{name}.pkl"
    if path.is_file():
        with open(path, "rb") as f:
            return pickle.load(f)
    labelled = [i for i, k in enumerate(kinds) if k is not None]
    t = [texts[i] for i in labelled]
    e = None if embeddings is None else embeddings[labelled]
    y = [kinds[i] for i in labelled]
    g = [groups[i] for i in labelled]
    evaluation = {
        "core": grouped_evaluation(t, e, y, g, classes=CORE_KINDS, n_splits=cfg.kinds.eval_folds, seed=cfg.project.seed, C=cfg.kinds.regularization),
        "all": grouped_evaluation(t, e, y, g, classes=KINDS, n_splits=cfg.kinds.eval_folds, seed=cfg.project.seed, C=cfg.kinds.regularization),
    }
    model = train(t, e, y, cfg.project.seed, C=cfg.kinds.regularization)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        pickle.dump((model, evaluation), f)
    tmp.rename(path)
    return model, evaluation


def summary(evaluation: dict, labelled: int, repositories: int) -> dict[str, Any]:
    """The evaluation's figures for the run's metrics and the report."""
    core, every = evaluation["core"]["pooled"], evaluation["all"]["pooled"]
    return {
        "labelled_issues": labelled, "labelled_repositories": repositories,
        "macro_f1_core": round(core["macro_f1_core"], 4), "macro_f1_core_folds": [round(f["macro_f1_core"], 4) for f in evaluation["core"]["folds"]],
        "macro_f1_all": round(every["macro_f1"], 4), "accuracy_core": round(core["accuracy"], 4), "ece_core": round(core["ece"], 4),
        "per_class": {k: {m: round(v, 4) if isinstance(v, float) else v for m, v in scores.items()} for k, scores in every["per_class"].items()},
        "per_class_core": {k: {m: round(v, 4) if isinstance(v, float) else v for m, v in scores.items()} for k, scores in core["per_class"].items()},
    }


def run(ctx) -> dict[str, Any]:
    """Decide the kind of every silver issue: its labels, else the classifier (evaluated by repository-grouped folds)."""
    cfg, tables = ctx.cfg, ctx.lake.arrow
    ctx.run.read(SILVER_ISSUES.name, SILVER_ISSUE_KINDS.name, "gold_embeddings")
    issues = tables.read(SILVER_ISSUES, columns=["repository", "number", "title", "body", "labels"])
    keys = list(zip(issues.column("repository").to_pylist(), issues.column("number").to_pylist()))
    texts = list(zip(issues.column("title").to_pylist(), (b or "" for b in issues.column("body").to_pylist())))
    patterns = compile_label_patterns(cfg.kinds.label_patterns)
    by_label = [kind_of_labels(labels or [], patterns, cfg.kinds.priority or None) for labels in issues.column("labels").to_pylist()]
    labelled = sum(k is not None for k in by_label)
    repositories = len({r for (r, _), k in zip(keys, by_label) if k is not None})
    if labelled == 0 or repositories < cfg.kinds.eval_folds:
        raise ValueError(f"{labelled} silver issues of {repositories} repositories carry a kind label; the classifier needs labelled issues "
                         f"of at least kinds.eval_folds={cfg.kinds.eval_folds} repositories (or set kinds.label_patterns to your labels)")
    t0 = time.perf_counter()
    embeddings, why = issue_embeddings(ctx, keys)
    name = model_id(texts, by_label, embeddings is not None, cfg)
    model, evaluation = fitted(Path(cfg.resolve_path("models/kinds")), name, texts, embeddings, by_label, [r for r, _ in keys], cfg)
    todo = [i for i, k in enumerate(by_label) if k is None]
    predicted, confidence = predict(model, [texts[i] for i in todo], None if embeddings is None else embeddings[todo]) if todo else ([], np.zeros(0))
    kinds, conf, source = list(by_label), [1.0 if k else None for k in by_label], ["label" if k else "model" for k in by_label]
    for i, kind, c in zip(todo, predicted, confidence):
        kinds[i], conf[i] = kind, float(c)
    rows = pa.table({"repository": [r for r, _ in keys], "number": pa.array([n for _, n in keys], pa.int64()), "kind": kinds,
                     "confidence": pa.array(conf, pa.float64()), "source": source,
                     "model_id": [None if s == "label" else name for s in source], "run_id": [ctx.run.run_id] * len(keys)})
    tables.overwrite(SILVER_ISSUE_KINDS, rows, {"silver_build": silver_build(tables), "model_id": name})
    ctx.run.wrote(SILVER_ISSUE_KINDS.name)
    report = summary(evaluation, labelled, repositories)
    table(f"classify: repository-grouped {cfg.kinds.eval_folds}-fold evaluation on {labelled:,} labelled issues of {repositories} repositories",
          ["kind", "precision", "recall", "F1", "issues"],
          [(k, v["precision"], v["recall"], v["f1"], v["support"]) for k, v in report["per_class_core"].items()]
          + [("macro-F1 (defect, feature, question)", "", "", report["macro_f1_core"], ""), ("macro-F1 (5 kinds)", "", "", report["macro_f1_all"], "")])
    mix = Counter(zip(kinds, source))
    table("classify: kinds of the silver issues", ["kind", "from labels", "predicted"],
          [(k, mix[(k, "label")], mix[(k, "model")]) for k in KINDS])
    return {"model_id": name, "embeddings": why, "evaluation": report, "seconds": round(time.perf_counter() - t0, 2),
            "kinds": {k: mix[(k, "label")] + mix[(k, "model")] for k in KINDS}, "from_labels": labelled, "predicted": len(todo)}


STAGE = Stage(
    "classify", "Kind of every silver issue (defect, feature, question, documentation, other) into silver_issue_kinds", run,
    reads=(SILVER_ISSUES.name, "gold_embeddings", "silver_summaries"), writes=(SILVER_ISSUE_KINDS.name,), sections=("kinds",),
)
