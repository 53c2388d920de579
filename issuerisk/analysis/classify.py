"""Stage ``classify``: the kind of every silver issue into ``silver_issue_kinds``.

An issue whose own GitHub labels name a kind keeps it (``source`` label). The
others are predicted by a classifier (:mod:`issuerisk.analysis.kinds`: text
features of title and body, plus each issue's sentence embedding when every silver
issue has one), with the probability of the predicted kind as its confidence
(``source`` model). The classifier learns from

- the input's own labelled issues when they come from at least ``kinds.eval_folds``
  repositories, judged by a repository-grouped K-fold on them (no repository in
  both training and test); or else
- the labelled issues of ``kinds.reference_corpus`` (GitHub issue files, the
  shared corpus of 428 ML projects by default) with the input's repositories
  left out, judged by the same grouped K-fold on the reference and by the input's
  own labelled issues, which it never saw. So a team can analyse one repository.

Macro-F1 over defect/feature/question and per-class precision and recall go to the
run's metrics (with the model's id and where its training data came from), the
report and the factsheet. Model and evaluation are cached outside the warehouse
(``kinds.model_cache_dir``, by default this user's cache folder) by a hash of their
training data and settings, so an unchanged corpus costs nothing the second time,
in any warehouse of the machine.

With ``kinds.method: llm`` an OpenAI-compatible endpoint names the unlabelled
issues' kinds (``source`` llm, no confidence; :mod:`issuerisk.analysis.kinds_llm`);
the classifier's kind stands where it gives none.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from issuerisk.analysis.kinds import (
    CORE_KINDS,
    compile_label_patterns,
    grouped_evaluation,
    kind_of_labels,
    predict,
    score_report,
    train,
)
from issuerisk.conf.settings import KINDS
from issuerisk.context import Context
from issuerisk.display import console, table
from issuerisk.issue_files import IngestError, find_files, iter_rows
from issuerisk.schemas.gold import GOLD_EMBEDDINGS
from issuerisk.schemas.silver import (
    SILVER_ISSUE_KINDS,
    SILVER_ISSUES,
    SILVER_KIND_ANSWERS,
    SILVER_PROJECT_TERMS,
    SILVER_SUMMARIES,
)
from issuerisk.silver import SILVER_NAMES, silver_build
from issuerisk.stage import Stage
from issuerisk.text.authors import bot_login_pattern
from issuerisk.vectors import NoVectorsError, load_current_vectors

NEVER = datetime.min.replace(tzinfo=timezone.utc)
"""The ``updated_at`` of a record without one: any dated record of the same issue is newer."""


class ClassifierError(ValueError):
    """No classifier can be trained for the issues' kinds (too few labelled repositories, no reference corpus)."""


def issue_embeddings(ctx: Context, keys: list[tuple[str, int]]) -> tuple[np.ndarray | None, str]:
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
    return vectors[[row[k] for k in keys]], f"{ctx.cfg.embed.key} vectors of the embedded texts"


def model_id(
    texts: list[tuple[str, str]], kinds: list[str | None], embedded: bool, cfg, prefix: str = "kinds-lr"
) -> str:
    """A hash of the training data (texts and label kinds) and settings: the classifier's identity and cache key."""
    digest = hashlib.sha256()
    for (title, body), kind in zip(texts, kinds):
        digest.update(f"{kind}\x1f{title}\x1f{body}\x1e".encode("utf-8", "surrogatepass"))
    settings = cfg.kinds.model_dump(
        mode="json", exclude={"reference_corpus", "model_cache_dir"}
    )  # where, not what, it learned from
    digest.update(
        json.dumps(
            {
                "kinds": settings,
                "embedded": embedded,
                "model": cfg.embed.key if embedded else None,
                "seed": cfg.project.seed,
            },
            sort_keys=True,
        ).encode()
    )
    return f"{prefix}-{'emb-' if embedded else ''}{digest.hexdigest()[:16]}"


def fitted(cache: Path, name: str, texts, embeddings, kinds, groups, cfg) -> tuple[Any, dict, str | None]:
    """The trained model, its grouped evaluation and, when it came from the cache, when it was trained."""
    path = cache / f"{name}.pkl"
    if path.is_file():
        with open(path, "rb") as f:
            model, evaluation = pickle.load(f)
        return (
            model,
            evaluation,
            datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).isoformat(timespec="seconds"),
        )
    labelled = [i for i, k in enumerate(kinds) if k is not None]
    t = [texts[i] for i in labelled]
    e = None if embeddings is None else embeddings[labelled]
    y = [kinds[i] for i in labelled]
    g = [groups[i] for i in labelled]
    evaluation = {
        "core": grouped_evaluation(
            t,
            e,
            y,
            g,
            classes=CORE_KINDS,
            n_splits=cfg.kinds.eval_folds,
            seed=cfg.project.seed,
            C=cfg.kinds.regularization,
        ),
        "all": grouped_evaluation(
            t, e, y, g, classes=KINDS, n_splits=cfg.kinds.eval_folds, seed=cfg.project.seed, C=cfg.kinds.regularization
        ),
    }
    model = train(t, e, y, cfg.project.seed, C=cfg.kinds.regularization)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        pickle.dump((model, evaluation), f)
    tmp.replace(path)
    return model, evaluation, None


def reference_examples(cfg, leave_out: set[str]) -> tuple[list[tuple[str, str]], list[str], list[str], set[str]]:
    """(title, body), label kind and repository of every labelled issue of ``kinds.reference_corpus``, and the
    repositories of ``leave_out`` that it holds.

    One row per issue (the newest ``updated_at`` of its records); pull requests, bot authors, records
    ingest would reject and the repositories in ``leave_out`` (lower case) are left out.

    Raises:
        ClassifierError: no reference corpus is configured, or its paths hold no issue files.
    """
    paths = [os.path.expanduser(p) for p in cfg.kinds.reference_corpus]
    if not paths:
        raise ClassifierError(
            "no kinds.reference_corpus is configured to train the classifier on; set it to files or folders of "
            "labelled GitHub issues (e.g. "
            "ISSUERISK__KINDS__REFERENCE_CORPUS='[\"../shared/data/lai2024-ml-issues/issues\"]')"
        )
    try:
        files = find_files(paths)
    except IngestError as exc:
        raise ClassifierError(f"kinds.reference_corpus: {exc}") from None
    patterns = compile_label_patterns(cfg.kinds.label_patterns)
    bots = re.compile(bot_login_pattern(cfg.filter.bot_login_patterns))
    newest: dict[tuple[str, int], dict] = {}
    held: set[str] = set()
    for path in files:
        for row in iter_rows(path, cfg.ingest.max_record_bytes, cfg.ingest.max_file_bytes):
            if (
                "reason" in row
                or row["is_pull_request"]
                or row["user_type"] == "Bot"
                or bots.search(row["user_login"] or "")
            ):
                continue
            if row["repository"].lower() in leave_out:
                held.add(row["repository"])
                continue
            kind = kind_of_labels(row["labels"] or [], patterns, cfg.kinds.priority or None)
            key = (row["repository"], row["number"])
            seen = newest.get(key)
            if kind is not None and (seen is None or (row["updated_at"] or NEVER) >= (seen["updated_at"] or NEVER)):
                newest[key] = {**row, "kind": kind}
    rows = [newest[k] for k in sorted(newest)]
    return (
        [(r["title"], r["body"] or "") for r in rows],
        [r["kind"] for r in rows],
        [r["repository"] for r in rows],
        held,
    )


def summary(evaluation: dict, labelled: int, repositories: int) -> dict[str, Any]:
    """The evaluation's figures for the run's metrics and the report."""
    core, every = evaluation["core"]["pooled"], evaluation["all"]["pooled"]
    return {
        "labelled_issues": labelled,
        "labelled_repositories": repositories,
        "macro_f1_core": round(core["macro_f1_core"], 4),
        "macro_f1_core_folds": [round(f["macro_f1_core"], 4) for f in evaluation["core"]["folds"]],
        "macro_f1_all": round(every["macro_f1"], 4),
        "accuracy_core": round(core["accuracy"], 4),
        "ece_core": round(core["ece"], 4),
        "per_class": _rounded(every["per_class"]),
        "per_class_core": _rounded(core["per_class"]),
    }


def _rounded(per_class: dict) -> dict:
    return {
        k: {m: round(v, 4) if isinstance(v, float) else v for m, v in scores.items()} for k, scores in per_class.items()
    }


def scores_table(title: str, per_class: dict, macro: list[tuple[str, float]]) -> None:
    """Print per-class precision, recall, F1 and support, then each macro-F1 (named by the kinds it averages)."""
    table(
        title,
        ["kind", "precision", "recall", "F1", "issues"],
        [(k, v["precision"], v["recall"], v["f1"], v["support"]) for k, v in per_class.items()]
        + [(f"macro-F1 ({kinds})", "", "", value, "") for kinds, value in macro],
    )


def input_check(model, texts, by_label) -> dict[str, Any] | None:
    """How the reference model does on the input's own labelled defects, features and questions (it never saw
    their repositories), or None when the input has none."""
    rows = [i for i, k in enumerate(by_label) if k in CORE_KINDS]
    if not rows:
        return None
    predicted, confidence = predict(model, [texts[i] for i in rows])
    report = score_report([by_label[i] for i in rows], predicted, confidence, CORE_KINDS)
    return {
        "issues": len(rows),
        "macro_f1_core": round(report["macro_f1_core"], 4),
        "accuracy": round(report["accuracy"], 4),
        "per_class_core": _rounded(report["per_class"]),
    }


def ask_llm(
    ctx: Context, keys: list[tuple[str, int]], texts: list[tuple[str, str]], by_label: list[str | None], todo: list[int]
) -> tuple[dict[str, Any], dict[int, str]]:
    """The LLM's kinds of the unlabelled rows ``todo``, and its record: what it was asked and answered, and its
    agreement with the labels of a seeded sample of the labelled defects, features and questions (asked too)."""
    from issuerisk.analysis.kinds_llm import check_sample, llm_kinds
    from issuerisk.display import progress

    cfg = ctx.cfg.kinds.llm
    check = check_sample(by_label, CORE_KINDS, cfg.check_issues)
    asked = sorted(set(todo) | set(check))
    with progress(len(asked), "classify (llm)", "issue", ctx.progress) as bar:
        answered, tally = llm_kinds(
            ctx.lake.arrow, cfg, keys, texts, asked, ctx.run.run_id, on_done=lambda: bar.update(1)
        )
    checked = [i for i in check if i in answered]
    agreement = None
    if checked:
        report = score_report(
            [by_label[i] for i in checked], [answered[i] for i in checked], np.ones(len(checked)), CORE_KINDS
        )
        agreement = {
            "issues": len(checked),
            "of_sample": len(check),
            "macro_f1_core": round(report["macro_f1_core"], 4),
            "accuracy": round(report["accuracy"], 4),
            "per_class_core": _rounded(report["per_class"]),
        }
        scores_table(
            f"classify: the LLM ({tally['model_id']}) on {len(checked):,} labelled issues of the input (their labels "
            "hidden from it)",
            agreement["per_class_core"],
            [("defect, feature, question", agreement["macro_f1_core"])],
        )
    unlabelled = {i: answered[i] for i in todo if i in answered}
    console.print(
        f"classify: the LLM named the kind of {len(unlabelled):,} of {len(todo):,} unlabelled issues "
        f"({tally['cached']:,} answers cached); the classifier's kind stands for the rest"
        + (f" (no answer: {tally['failed_by_reason']})" if tally["failed_by_reason"] else "")
    )
    return {**tally, "label_check": agreement}, unlabelled


def run(ctx: Context) -> dict[str, Any]:
    """Decide the kind of every silver issue: its labels, else a classifier (evaluated on repositories it never saw).

    Raises:
        ClassifierError: the input has labelled issues of fewer than ``kinds.eval_folds`` repositories and the
            reference corpus cannot stand in (none configured, no issue files, too few labelled repositories).
    """
    cfg, tables = ctx.cfg, ctx.lake.arrow
    issues = tables.read(SILVER_ISSUES, columns=["repository", "number", "title", "body", "labels"])
    keys = list(zip(issues.column("repository").to_pylist(), issues.column("number").to_pylist()))
    texts = list(zip(issues.column("title").to_pylist(), (b or "" for b in issues.column("body").to_pylist())))
    patterns = compile_label_patterns(cfg.kinds.label_patterns)
    by_label = [
        kind_of_labels(labels or [], patterns, cfg.kinds.priority or None)
        for labels in issues.column("labels").to_pylist()
    ]
    labelled = sum(k is not None for k in by_label)
    repositories = len({r for (r, _), k in zip(keys, by_label) if k is not None})
    t0 = time.perf_counter()
    if repositories >= cfg.kinds.eval_folds:
        embeddings, why = issue_embeddings(ctx, keys)
        train_texts, train_kinds, groups, prefix = texts, by_label, [r for r, _ in keys], "kinds-lr"
        origin: dict[str, Any] = {"source": "input labels"}
    else:
        embeddings, why = None, "the reference corpus is not embedded: text features only"
        console.print(
            f"classify: {labelled:,} silver issues of {repositories} repositories carry a kind label, fewer than "
            f"kinds.eval_folds={cfg.kinds.eval_folds} repositories to train and evaluate a classifier on; learning "
            "from "
            f"the labelled issues of kinds.reference_corpus instead (without the input's repositories)"
        )
        leave_out = {r.lower() for r, _ in keys}
        train_texts, train_kinds, groups, held = reference_examples(cfg, leave_out)
        prefix = "kinds-ref-lr"
        reference_repositories = len(set(groups))
        if reference_repositories < cfg.kinds.eval_folds:
            raise ClassifierError(
                f"kinds.reference_corpus {cfg.kinds.reference_corpus} holds labelled issues of "
                f"{reference_repositories} "
                "repositories other than the input's; a classifier needs at least "
                f"kinds.eval_folds={cfg.kinds.eval_folds}: "
                "point it at a larger corpus, or set kinds.label_patterns to your labels"
            )
        origin = {
            "source": "reference corpus",
            "reference_corpus": list(cfg.kinds.reference_corpus),
            "left_out_input_repositories": len(held),
        }
    name = model_id(train_texts, train_kinds, embeddings is not None, cfg, prefix)
    cache = Path(cfg.cache_dir(cfg.kinds.model_cache_dir, "kinds"))
    model, evaluation, trained_at = fitted(cache, name, train_texts, embeddings, train_kinds, groups, cfg)
    train_labelled, train_repositories = (
        sum(k is not None for k in train_kinds),
        len({g for g, k in zip(groups, train_kinds) if k is not None}),
    )
    console.print(
        f"classify: classifier {name} "
        + (f"reused from {cache} (trained {trained_at})" if trained_at else f"trained and kept in {cache}")
        + f" on {train_labelled:,} labelled issues of {train_repositories} repositories ({origin['source']})"
    )
    todo = [i for i, k in enumerate(by_label) if k is None]
    predicted, confidence = (
        predict(model, [texts[i] for i in todo], None if embeddings is None else embeddings[todo])
        if todo
        else ([], np.zeros(0))
    )
    kinds, conf, source, models = (
        list(by_label),
        [1.0 if k else None for k in by_label],
        ["label" if k else "model" for k in by_label],
        [None if k else name for k in by_label],
    )
    for i, kind, c in zip(todo, predicted, confidence):
        kinds[i], conf[i] = kind, float(c)
    llm = None
    if cfg.kinds.method == "llm":
        llm, answered = ask_llm(ctx, keys, texts, by_label, todo)
        for i, kind in answered.items():  # the endpoint gives no probability: its kinds carry none
            kinds[i], conf[i], source[i], models[i] = kind, None, "llm", llm["model_id"]
    rows = pa.table(
        {
            "repository": [r for r, _ in keys],
            "number": pa.array([n for _, n in keys], pa.int64()),
            "kind": kinds,
            "confidence": pa.array(conf, pa.float64()),
            "source": source,
            "model_id": models,
            "run_id": [ctx.run.run_id] * len(keys),
        }
    )
    tables.overwrite(SILVER_ISSUE_KINDS, rows, {"silver_build": silver_build(tables), "model_id": name})
    report = summary(evaluation, train_labelled, train_repositories)
    scores_table(
        f"classify: repository-grouped {cfg.kinds.eval_folds}-fold evaluation on {train_labelled:,} labelled issues of "
        f"{train_repositories} repositories ({origin['source']})",
        report["per_class_core"],
        [("defect, feature, question", report["macro_f1_core"]), ("5 kinds", report["macro_f1_all"])],
    )
    check = None if origin["source"] == "input labels" else input_check(model, texts, by_label)
    if check:
        scores_table(
            f"classify: the reference model on the input's {check['issues']:,} labelled issues (repositories it never "
            "saw)",
            check["per_class_core"],
            [("defect, feature, question", check["macro_f1_core"])],
        )
    if llm and llm["label_check"]:
        classifier_f1 = check["macro_f1_core"] if check else report["macro_f1_core"]
        llm["classifier_macro_f1_core"] = classifier_f1
        if llm["label_check"]["macro_f1_core"] < classifier_f1:
            console.print(
                f"[yellow]classify: the LLM agrees with the input's labels less than the classifier does on "
                f"repositories it never saw (macro-F1 {llm['label_check']['macro_f1_core']:.2f} against "
                f"{classifier_f1:.2f}); check kinds.llm.model, or set kinds.method: classifier[/yellow]"
            )
    mix = Counter(zip(kinds, source))
    table(
        "classify: kinds of the silver issues",
        ["kind", "from labels", "predicted", *(["from the LLM"] if llm else [])],
        [(k, mix[(k, "label")], mix[(k, "model")], *([mix[(k, "llm")]] if llm else [])) for k in KINDS],
    )
    return {
        "model_id": name,
        "method": cfg.kinds.method,
        "llm": llm,
        "model": {
            **origin,
            "model_id": name,
            "reused": trained_at is not None,
            "trained_at": trained_at,
            "input_check": check,
        },
        "embeddings": why,
        "evaluation": report,
        "seconds": round(time.perf_counter() - t0, 2),
        "kinds": {k: mix[(k, "label")] + mix[(k, "model")] + mix[(k, "llm")] for k in KINDS},
        "from_labels": labelled,
        "predicted": len(todo),
        "from_llm": sum(s == "llm" for s in source),
        "input_labelled_repositories": repositories,
    }


STAGE = Stage(
    "classify",
    "Kind of every silver issue (defect, feature, question, documentation, other) into silver_issue_kinds",
    run,
    reads=(*sorted(SILVER_NAMES), GOLD_EMBEDDINGS.name, SILVER_SUMMARIES.name, SILVER_PROJECT_TERMS.name),
    writes=(SILVER_ISSUE_KINDS.name, SILVER_KIND_ANSWERS.name),
    sections=("kinds",),
)
