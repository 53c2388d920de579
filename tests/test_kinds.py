"""Issue kinds: the label map on real label spellings of the corpus, the grouped split, the classifier (SYNTHETIC
texts)."""

from __future__ import annotations

import numpy as np
import pytest

from issuerisk.analysis.kinds import (
    compile_label_patterns,
    grouped_evaluation,
    grouped_folds,
    kind_of_labels,
    normalize_label,
    predict,
    train,
)
from issuerisk.conf.settings import KIND_LABEL_PATTERNS

# Label names as they occur in ../shared/data/lai2024-ml-issues (count in the corpus in the comment).
REAL_SPELLINGS = {
    "bug": "defect",  # 4,500
    "type:Bug": "defect",  # 152
    "kind/bug": "defect",
    "🐛 Bug": "defect",
    "regression": "defect",
    "enhancement": "feature",  # 4,085
    "feature request": "feature",  # 349
    "Feature-request": "feature",
    "type:Enhancement": "feature",  # 111
    "new feature": "feature",
    "question": "question",  # 1,620
    "type:Question": "question",  # 106
    "howtousedlc": "question",  # 175 (DeepLabCut)
    "user support": "question",  # 76 (talos)
    "documentation": "documentation",  # 527
    "area/docs": "documentation",  # 169
    "Documentation": "documentation",  # 91
    "maintenance": "other",  # 148
    "discussion": "other",  # 154
}
NOT_KINDS = [
    "stale",
    "Stale",
    "wontfix",
    "duplicate",
    "good first issue",
    "help wanted",
    "priority/important-soon",
    "p0",
    "area/tracking",
    "module:forecasting",
    "Installation",
    "invalid",
    "backlog",
]


@pytest.mark.parametrize(("label", "kind"), sorted(REAL_SPELLINGS.items()))
def test_real_label_spellings_map_to_their_kind(label, kind):
    assert kind_of_labels([label], compile_label_patterns(KIND_LABEL_PATTERNS)) == kind


@pytest.mark.parametrize("label", NOT_KINDS)
def test_labels_that_are_not_kinds_give_none(label):
    assert kind_of_labels([label]) is None


def test_several_kinds_resolve_or_stay_open():
    assert kind_of_labels(["bug", "stale", "maintenance"]) == "defect", "other yields to a specific kind"
    assert kind_of_labels(["bug", "documentation"]) == "documentation"
    assert kind_of_labels(["bug", "enhancement"]) is None
    assert kind_of_labels(["bug", "enhancement"], priority=["feature", "defect"]) == "feature"
    assert normalize_label("Type: Bug 🐛") == "bug" and normalize_label("kind/feature-request") == "feature request"


def test_the_grouped_split_never_puts_a_repository_in_training_and_test():
    groups = [f"o/r{i % 13}" for i in range(200)]
    folds = grouped_folds(groups, 5, seed=0)
    assert sorted(np.concatenate([te for _, te in folds]).tolist()) == list(range(200))
    for tr, te in folds:
        assert not {groups[i] for i in tr} & {groups[i] for i in te}


def synthetic(n_repos=8, per=30, seed=0):
    """SYNTHETIC labelled issues: bug reports, feature requests and questions in several template styles."""
    rng = np.random.default_rng(seed)
    bodies = {
        "defect": [
            "Describe the bug\nIt crashes with RuntimeError: CUDA error\nTraceback (most recent call last):",
            "Expected behavior\nno crash, but got an exception",
        ],
        "feature": [
            "Is your feature request related to a problem? Please add support for ONNX export",
            "It would be nice to support mixed precision",
        ],
        "question": [
            "How can I change the learning rate? Is there a way to do it?",
            "What is the right way to load a checkpoint?",
        ],
    }
    titles = {"defect": "Crash in {} when training", "feature": "Add support for {}", "question": "How to use {}?"}
    texts, kinds, groups = [], [], []
    for r in range(n_repos):
        for i in range(per):
            kind = ["defect", "feature", "question"][i % 3]
            texts.append((titles[kind].format(f"module{rng.integers(50)}"), bodies[kind][rng.integers(2)]))
            kinds.append(kind)
            groups.append(f"synthetic/repo{r}")
    return texts, kinds, groups


def test_the_classifier_learns_kinds_and_its_grouped_evaluation_reports_them():
    texts, kinds, groups = synthetic()
    report = grouped_evaluation(texts, None, kinds, groups, classes=("defect", "feature", "question"), n_splits=4)
    assert report["pooled"]["macro_f1_core"] > 0.95 and len(report["folds"]) == 4
    assert set(report["pooled"]["per_class"]) == {"defect", "feature", "question"}
    model = train(texts, None, kinds)
    got, confidence = predict(
        model,
        [
            ("Crash in loader when training", "Traceback (most recent call last): RuntimeError"),
            ("Add support for TPU", ""),
        ],
    )
    assert got == ["defect", "feature"] and (confidence > 0.5).all()


def test_a_grouped_evaluation_needs_enough_repositories():
    texts, kinds, groups = synthetic(n_repos=3)
    with pytest.raises(ValueError, match="needs at least 5 repositories with labelled issues, got 3"):
        grouped_evaluation(texts, None, kinds, groups, n_splits=5)


def test_the_classify_stage_keeps_label_kinds_and_predicts_the_rest(cfg):
    import pyarrow as pa

    from issuerisk.analysis import classify
    from issuerisk.schemas.silver import SILVER_ISSUES
    from tests.conftest import make_ctx
    from tests.test_embed import _issue

    texts, kinds, groups = synthetic(n_repos=6, per=12)
    rows = []
    for n, ((title, body), kind, repo) in enumerate(zip(texts, kinds, groups)):
        label = {"defect": "bug", "feature": "enhancement", "question": "question"}[kind]
        rows.append({**_issue(repo, n), "title": title, "body": body, "labels": [label] if n % 4 else ["stale"]})
    ctx = make_ctx(cfg.updated("kinds", eval_folds=3))
    ctx.lake.arrow.merge(SILVER_ISSUES, pa.Table.from_pylist(rows, schema=SILVER_ISSUES.arrow))
    result = classify.run(ctx)
    assert (
        result["from_labels"] == sum(1 for n in range(len(rows)) if n % 4)
        and result["predicted"] == len(rows) - result["from_labels"]
    )
    assert result["evaluation"]["macro_f1_core"] > 0.9 and result["embeddings"] == "nothing embedded yet"
    got = {r["number"]: r for r in ctx.lake.arrow.read("silver_issue_kinds").to_pylist()}
    assert got[1]["source"] == "label" and got[1]["confidence"] == 1.0 and got[1]["model_id"] is None
    assert got[0]["source"] == "model" and got[0]["model_id"] == result["model_id"] and got[0]["kind"] == kinds[0]
    again = classify.run(make_ctx(ctx.cfg))
    assert again["model_id"] == result["model_id"] and again["seconds"] < result["seconds"], (
        "the model comes from the cache"
    )


REFERENCE_REPOSITORIES = (
    "f90__Wave-U-Net",
    "SimGus__Chatette",
    "mikgroup__sigpy",
    "jgraving__DeepPoseKit",
    "nubank__fklearn",
    "zhou13__lcnn",
    "Farama-Foundation__Miniworld",
    "brendanhasz__probflow",
)


def test_the_classify_stage_learns_from_the_reference_corpus_when_the_input_has_too_few_labelled_repositories(
    cfg, real_issues_dir, tmp_path
):
    """One REAL repository as the input (f90/Wave-U-Net, 31 of its 49 issues labelled), a reference corpus of eight real
    repositories that includes it: the stage must not abort, must leave the input's repository out of the reference,
    keep the input's labels, predict the rest, check the model on the input's labels and say which model gave the
    kinds."""
    import shutil

    import pyarrow as pa

    from issuerisk.analysis import classify
    from issuerisk.issue_files import parse_file
    from issuerisk.schemas.silver import SILVER_ISSUES
    from tests.conftest import make_ctx
    from tests.test_embed import _issue

    reference = tmp_path / "reference"
    reference.mkdir()
    for name in REFERENCE_REPOSITORIES:
        shutil.copy(real_issues_dir / f"{name}.jsonl.gz", reference)
    real = [r for r in parse_file(str(real_issues_dir / "f90__Wave-U-Net.jsonl.gz")) if "reason" not in r]
    rows = [
        {**_issue(r["repository"], r["number"]), "title": r["title"], "body": r["body"] or "", "labels": r["labels"]}
        for r in real
    ]
    ctx = make_ctx(cfg.updated("kinds", reference_corpus=[str(reference)], eval_folds=5))
    ctx.lake.arrow.merge(SILVER_ISSUES, pa.Table.from_pylist(rows, schema=SILVER_ISSUES.arrow))
    result = classify.run(ctx)

    labelled = sum(kind_of_labels(r["labels"]) is not None for r in real)
    assert (result["from_labels"], result["predicted"], result["input_labelled_repositories"]) == (
        labelled,
        len(real) - labelled,
        1,
    )
    model = result["model"]
    assert model["source"] == "reference corpus" and model["left_out_input_repositories"] == 1 and not model["reused"]
    assert result["model_id"].startswith("kinds-ref-lr-") and result["embeddings"].startswith(
        "the reference corpus is not embedded"
    )
    assert result["evaluation"]["labelled_repositories"] == len(REFERENCE_REPOSITORIES) - 1, (
        "the input's repository is not trained on"
    )
    assert model["input_check"]["issues"] == sum(
        kind_of_labels(r["labels"]) in ("defect", "feature", "question") for r in real
    )
    assert 0.0 <= model["input_check"]["macro_f1_core"] <= 1.0
    kinds = ctx.lake.arrow.read("silver_issue_kinds").to_pylist()
    assert {r["source"] for r in kinds} == {"label", "model"}
    assert {r["model_id"] for r in kinds if r["source"] == "model"} == {result["model_id"]}

    again = classify.run(make_ctx(ctx.cfg))
    assert again["model_id"] == result["model_id"] and again["model"]["reused"], (
        "the same input and reference reuse the cached model"
    )


def test_without_a_reference_corpus_too_few_labelled_repositories_is_a_clear_error(cfg):
    import pyarrow as pa

    from issuerisk.analysis import classify
    from issuerisk.schemas.silver import SILVER_ISSUES
    from tests.conftest import make_ctx
    from tests.test_embed import _issue

    ctx = make_ctx(cfg.updated("kinds", reference_corpus=[]))
    ctx.lake.arrow.merge(
        SILVER_ISSUES, pa.Table.from_pylist([{**_issue("a/b", 1), "labels": ["bug"]}], schema=SILVER_ISSUES.arrow)
    )
    with pytest.raises(classify.ClassifierError, match="no kinds.reference_corpus is configured"):
        classify.run(ctx)
