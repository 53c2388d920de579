"""Framework versions read from issue texts, checked on a hand-labelled sample of real issues, and the version x
pattern table (REAL issue texts in tests/data/version_sample.jsonl; the table test is SYNTHETIC)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from issuerisk.analysis.versions import version_rows, wilson
from issuerisk.conf.settings import VersionsConfig
from issuerisk.text.versions import extract, version_key

DATA = Path(__file__).parent / "data"


def pairs(text: str) -> set[tuple[str, str]]:
    return {(v.framework, v.version) for v in extract(text)}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("PyTorch version: 1.10.0+cu102\nIs debug build: False", {("pytorch", "1.10")}),
        ("TensorFlow version (use command below): v2.4.0-rc4-71-g582c8d236cb 2.4.0", {("tensorflow", "2.4")}),
        ("torch                     1.9.0+cu111\ntorchvision               0.10.0", {("pytorch", "1.9")}),
        ("Name: tensorflow-gpu\nVersion: 1.15.2\nSummary: TensorFlow", {("tensorflow", "1.15")}),
        (">>> import torch\n>>> torch.__version__\n'1.8.0'", {("pytorch", "1.8")}),
        ("pip install keras==2.3.1 tensorflow-gpu==1.14", {("keras", "2.3"), ("tensorflow", "1.14")}),
        ("It broke when I moved from TF2 to tf 1.15", {("tensorflow", "2"), ("tensorflow", "1.15")}),
        ("- PyTorch Version (e.g., 1.0):\n- OS (e.g., Linux):", set()),
        ("pip install torch>=1.7 torchvision==0.8.1 pytorch-lightning==1.5.0", set()),
        ("see https://pytorch.org/docs/1.7.0/nn.html and https://www.tensorflow.org/versions/r1.15/api_docs", set()),
        ("tensorflow-addons 0.12.1, tf.keras 2.4, tf2onnx, torch2trt and 10 torch GPUs", set()),
    ],
)
def test_the_spellings_of_a_version(text, expected):
    assert pairs(text) == expected


def test_precision_and_recall_on_two_hundred_hand_labelled_real_issues():
    """tests/data/version_sample.jsonl: 200 corpus issues that name a framework (seeded random draw); the labels were
    made by reading each issue, before the extractor was run on them. Measured: precision 0.91, recall 0.80."""
    sample = [json.loads(line) for line in (DATA / "version_sample.jsonl").read_text().splitlines()]
    labels = [json.loads(line) for line in (DATA / "version_labels.jsonl").read_text().splitlines()]
    assert len(sample) == len(labels) == 200
    assert [(s["repository"], s["number"]) for s in sample] == [(x["repository"], x["number"]) for x in labels]
    found = correct = wanted = 0
    for issue, label in zip(sample, labels):
        got = pairs(f"{issue['title']}\n{issue['body']}")
        want = {(v["framework"], v["version"]) for v in label["versions"]}
        found, correct, wanted = found + len(got), correct + len(got & want), wanted + len(want)
    assert wanted >= 30, "the sample holds enough reported versions to measure"
    assert correct / found >= 0.85, f"precision {correct}/{found}"
    assert correct / wanted >= 0.7, f"recall {correct}/{wanted}"


def test_wilson_interval_and_version_order():
    low, high = wilson(5, 10)
    assert (round(low, 3), round(high, 3)) == (0.237, 0.763)
    assert wilson(0, 20)[0] == 0.0 and 0.1 < wilson(0, 20)[1] < 0.2
    assert sorted(["1.10", "2.x", "1.x", "1.9", "2.0"], key=version_key) == ["1.9", "1.10", "1.x", "2.0", "2.x"]


def test_a_pattern_concentrated_in_one_version_is_over_represented_there():
    """SYNTHETIC: pattern 1 is most of TF 2.3's issues and rare elsewhere; pattern 2 is spread evenly."""
    issues, versions = [], []
    plan = {"2.3": (24, 6, 10), "2.4": (2, 6, 22), "1.15": (2, 6, 22)}  # (pattern 1, pattern 2, noise) per version
    number = 0
    for version, (one, two, noise) in plan.items():
        for cluster, count in ((1, one), (2, two), (-1, noise)):
            for _ in range(count):
                number += 1
                issues.append(("o/r", number, cluster))
                versions.append(("o/r", number, "tensorflow", version))
    clusters = pd.DataFrame(issues, columns=["repository", "number", "cluster"])
    reported = pd.DataFrame(versions, columns=["repository", "number", "framework", "version"])
    rows = version_rows(clusters, reported, {1, 2}, VersionsConfig(min_issues=10))
    cell = {(r["version"], r["cluster"]): r for r in rows}
    assert cell[("2.3", 1)]["over_represented"] and cell[("2.3", 1)]["residual"] > 4
    assert cell[("2.3", 1)]["share"] == 0.6 and cell[("2.3", 1)]["share_low"] < 0.6 < cell[("2.3", 1)]["share_high"]
    assert not any(cell[(v, 2)]["over_represented"] for v in plan)
    assert cell[("2.x", 1)]["version_n"] == 70 and cell[("1.x", 1)]["version_n"] == 30, "majors: 2.3 + 2.4, 1.15"
    assert {v for v, _ in cell} == {"1.15", "2.3", "2.4", "1.x", "2.x"}
    few = version_rows(clusters, reported, {1, 2}, VersionsConfig(min_issues=10, min_pattern_issues=27))
    assert not any(r["over_represented"] for r in few), "24 in 2.3 and 26 in 2.x: under the minimum of 27"
