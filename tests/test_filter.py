"""Filter rules and framework inference on real Spark + Delta, and their pure helpers."""

from __future__ import annotations

import json

import pytest

from issuerisk.conf.settings import FilterConfig, FrameworkInferenceConfig
from issuerisk.jobs import filter as silver_filter
from issuerisk.jobs import ingest
from issuerisk.jobs.filter import near_duplicates
from issuerisk.text.frameworks import tag
from issuerisk.text.repos import repo_keyword
from tests.github_objects import issue

KW = FilterConfig().excluded_repo_keywords


@pytest.mark.parametrize(
    "repo, description, hit",
    [
        ("someone/pytorch-tutorial", None, "tutorial in name"),
        ("someone/DeepLearningTutorials", None, "tutorial in name"),
        ("someone/ml-handbook", None, "handbook in name"),
        ("someone/stable-diffusion-webui", None, "webui in name"),
        ("someone/awesome-keras", None, "awesome in name"),
        ("someone/detector", "Code for the book Deep Learning with PyTorch", "book in description"),
        ("someone/notebooks", None, None),
        ("someone/build-tools", None, None),
        ("someone/yolov5", "Object detection in PyTorch", None),
    ],
)
def test_repo_keyword(repo, description, hit):
    assert repo_keyword(repo, description, KW) == hit


def test_near_duplicates_keeps_the_earliest():
    base = "model fit raises value error when the input shape does not match the first dense layer of the network"
    texts = [
        base,
        "completely different text about cuda memory on multiple gpus during distributed training",
        base + " thanks",
    ]
    assert near_duplicates([12, 5, 30], texts, threshold=0.8) == {30: 12}
    assert near_duplicates([1, 2], ["a b c d e f", "x y z w v u"], threshold=0.9) == {}


@pytest.mark.parametrize(
    "evidence, given, expected",
    [
        ({"pytorch": 10, "tensorflow": 0, "keras": 0}, None, (["pytorch"], "pytorch", "inferred")),
        ({"pytorch": 0, "tensorflow": 6, "keras": 5}, None, (["tensorflow", "keras"], "tensorflow", "inferred")),
        ({"pytorch": 10, "tensorflow": 1, "keras": 0}, None, (["pytorch"], "pytorch", "inferred")),
        ({"pytorch": 1, "tensorflow": 0, "keras": 0}, None, (["unknown"], "unknown", "inferred")),
        ({"pytorch": 0, "tensorflow": 0, "keras": 0}, None, (["unknown"], "unknown", "inferred")),
        ({"pytorch": 9, "tensorflow": 0, "keras": 0}, "keras", (["keras"], "keras", "given")),
    ],
)
def test_framework_tag(evidence, given, expected):
    assert tag(evidence, given, FrameworkInferenceConfig(min_evidence=2, min_share=0.2)) == expected


TORCH_TRACE = (
    "```\nTraceback (most recent call last):\n  File "
    '"/usr/lib/python3/site-packages/torch/nn/modules/module.py", line 1\nRuntimeError: CUDA out of '
    "memory\n```"
)


def synthetic_corpus() -> list[dict]:
    """SYNTHETIC issues exercising every filter rule once."""
    repo, tut = "acme/detector", "acme/pytorch-tutorial"
    dup_text = (
        "Training crashes with a shape mismatch in the loss function when the batch size is odd and the model "
        "uses mixed precision"
    )
    return [
        issue(
            repo,
            1,
            "CUDA out of memory when training",
            f"When I train with `import torch` the GPU runs out of memory.\n{TORCH_TRACE}",
            state="closed",
            created="2021-03-01T10:00:00Z",
            closed="2021-03-03T10:00:00Z",
        ),
        issue(
            repo,
            2,
            "Loss is NaN after a few epochs",
            "Using torch.optim.Adam with lr 1e-3 the loss becomes NaN after three epochs of training.",
        ),
        issue(
            repo,
            3,
            "Add a feature",
            "Pull request body with a new feature for the data loader and tests.",
            pull_request=True,
        ),
        issue(
            repo,
            4,
            "Bump numpy from 1.19 to 1.22",
            "Bumps numpy from 1.19 to 1.22 with release notes.",
            login="dependabot[bot]",
            user_type="Bot",
        ),
        issue(
            repo,
            5,
            "训练时出现错误",
            "我在训练模型的时候遇到了一个错误，请问应该怎么解决这个问题？谢谢大家的帮助。模型无法收敛，损失一直很高。",
        ),
        issue(repo, 6, "Shape mismatch in loss", dup_text),
        issue(repo, 7, "shape mismatch in loss!", dup_text.upper()),
        issue(repo, 8, "Shape mismatch in loss", dup_text + " please help"),
        issue(
            tut,
            1,
            "Lesson 3 does not run",
            "The tutorial notebook for lesson three fails with torch.cuda errors on colab.",
        ),
    ]


@pytest.mark.slow
def test_filter_applies_every_rule(ctx, tmp_path):
    src = tmp_path / "synthetic.jsonl"
    src.write_text("".join(json.dumps(o) + "\n" for o in synthetic_corpus()))
    ingest.run(ctx, [str(src)])
    result = silver_filter.run(ctx)

    excluded = {
        (r["repository"], r["number"]): (r["reason"], r["detail"])
        for r in ctx.lake.spark.read("silver_excluded").collect()
    }
    assert excluded[("acme/detector", 3)][0] == "pull_request"
    assert excluded[("acme/detector", 4)] == ("bot_author", "dependabot[bot]")
    assert excluded[("acme/detector", 5)][0] == "non_english"
    assert excluded[("acme/detector", 7)] == ("duplicate", "same text as #6")
    assert excluded[("acme/detector", 8)] == ("duplicate", "near-identical to #6")
    assert excluded[("acme/pytorch-tutorial", 1)] == ("excluded_repository", "tutorial in name")
    assert len(excluded) == 6

    silver = {
        r["number"]: r for r in ctx.lake.spark.read("silver_issues").where("repository = 'acme/detector'").collect()
    }
    assert sorted(silver) == [1, 2, 6]
    assert silver[1]["resolution_hours"] == pytest.approx(48.0)
    assert silver[2]["resolution_hours"] is None and silver[2]["is_closed"] is False
    assert {r["framework"] for r in silver.values()} == {"pytorch"}
    assert silver[1]["framework_source"] == "inferred"
    repos = {r["repository"]: r for r in ctx.lake.spark.read("silver_repositories").collect()}
    assert repos["acme/detector"]["evidence"]["pytorch"] >= 2
    assert repos["acme/pytorch-tutorial"]["frameworks"] == ["unknown"]
    assert result["silver"] == 3 and result["excluded"]["duplicate"] == 2

    again = silver_filter.run(ctx)
    assert again["silver"] == 3 and ctx.lake.spark.read("silver_excluded").count() == 6


def test_compiled_language_identifier_matches_py3langid():
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    from issuerisk.text.kernels import language_identifier

    reference = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    compiled = language_identifier()
    texts = [
        "Model fit raises a shape mismatch when the batch size changes between epochs.",  # SYNTHETIC texts
        "Der Fehler tritt beim Training des Modells auf und ich weiß nicht warum.",
        "模型训练时出现错误，请问应该怎么解决这个问题",
        "Le modèle ne converge pas après la mise à jour.",
        "!!!",
        "",
    ]
    for text in texts:
        want, got = reference.classify(text), compiled.classify(text)
        assert got[0] == want[0] and abs(got[1] - want[1]) < 1e-4, text


def test_shingle_hashes_are_stable_and_distinct():
    from issuerisk.text.kernels import minhash_signatures, shingle_hashes

    a, b = shingle_hashes("a b c d"), shingle_hashes("a b c d")
    assert list(a) == list(b) and len(a) == 2 and a.max() < 2**31
    assert len(shingle_hashes("one two")) == 1 and len(shingle_hashes("")) == 1
    signatures = minhash_signatures([a, shingle_hashes("a b c d e"), shingle_hashes("x y z w")], 64)
    agree = (signatures[0] == signatures[1]).mean(), (signatures[0] == signatures[2]).mean()
    assert agree[0] > 0.4 and agree[1] < 0.1  # Jaccard 2/3 against 0


def test_issue_evidence_equals_a_full_regex_scan():
    import re

    from issuerisk.text.frameworks import EVIDENCE, issue_evidence

    filler = "The loss does not go down after the first epoch. " * 20  # SYNTHETIC texts
    bodies = [
        filler + "from tensorflow import keras",
        "x = 1\n" + filler + "import torchvision.models",
        filler + "pytorch_lightning trainer",
        "import torchx and tf.reducex",
        "my_tf.keras and import tensorflowx",
        filler + "RuntimeError: CUDA out of memory",
        "torch torch " + filler + " site-packages/keras/",
        None,
    ]
    for body in bodies:
        text = f"title\n{body or ''}"
        assert issue_evidence("title", body) == tuple(int(re.search(p, text) is not None) for p in EVIDENCE.values()), (
            body
        )
