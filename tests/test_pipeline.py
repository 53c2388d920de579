"""``issuerisk run`` end to end in a fresh process on a small SYNTHETIC corpus: every stage in order, one run id.

Three failure themes and one theme of feature requests, written by six repositories each, so the defect
patterns recur across projects and the feature requests are a cluster that must not be graded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.github_objects import issue

pytestmark = pytest.mark.slow

THEMES = {
    "oom": (
        "defect",
        "bug",
        "CUDA out of memory when training {m} with batch size {b}",
        "RuntimeError: CUDA out of memory. Tried to allocate {b} MiB on the GPU while training the {m} model on {d} "
        "data.",
    ),
    "shape": (
        "defect",
        "bug",
        "Shape mismatch in {m} layer input",
        "ValueError: shapes ({b}, 3) and (4, {b}) not aligned when calling the {m} layer on {d} tensors.",
    ),
    "nan": (
        "defect",
        "bug",
        "Loss becomes NaN after epoch {b} for {m}",
        "The training loss of the {m} network turns to nan after a few epochs with the {d} optimizer and learning rate "
        "{b}.",
    ),
    "feature": (
        "feature",
        "enhancement",
        "Add support for {m} export",
        "It would be nice to add support for exporting {m} models to {d} format, a feature request for version {b}.",
    ),
}
WORDS = [
    "resnet",
    "bert",
    "unet",
    "gan",
    "lstm",
    "vit",
    "yolo",
    "transformer",
    "autoencoder",
    "mlp",
    "onnx",
    "tflite",
    "imagenet",
    "cifar",
    "mnist",
    "coco",
    "adam",
    "sgd",
    "rmsprop",
    "lamb",
]


def corpus(
    per_theme_repo: int = 6, repos: int = 6, seed: int = 0, name: str = "synthetic-org/project"
) -> list[tuple[str, dict]]:
    """(theme, issue object) of every synthetic issue."""
    rng = np.random.default_rng(seed)
    rows, number = [], {}
    for theme, (_, label, title, body) in THEMES.items():
        for r in range(repos):
            repo = f"{name}{r}"
            for _ in range(per_theme_repo):
                number[repo] = number.get(repo, 0) + 1
                m, d = rng.choice(WORDS, 2, replace=False)
                fill = {"m": m, "d": d, "b": int(rng.integers(2, 512))}
                closed = number[repo] % 3 != 0
                rows.append(
                    (
                        theme,
                        issue(
                            repo,
                            number[repo],
                            title.format(**fill),
                            body.format(**fill) + f" Seen on machine {rng.integers(10**6)}.",
                            labels=(label,) if number[repo] % 5 else (),
                            state="closed" if closed else "open",
                            created="2021-03-01T10:00:00Z",
                            updated="2021-04-01T10:00:00Z",
                            closed=f"2021-03-{1 + int(rng.integers(1, 27)):02d}T10:00:00Z" if closed else None,
                        ),
                    )
                )
    return rows


def small_run_env(tmp_path, **extra: str) -> dict[str, str]:
    """The environment of an ``issuerisk run`` subprocess sized for a test corpus of a few dozen issues."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ISSUERISK")}
    env.update(
        {
            "ISSUERISK_WAREHOUSE": str(tmp_path / "wh"),
            "ISSUERISK__SPARK__MASTER": "local[2]",
            "ISSUERISK__SPARK__SHUFFLE_PARTITIONS": "2",
            "ISSUERISK__SPARK__DRIVER_MEMORY": "1g",
            "ISSUERISK__RAY__NUM_CPUS": "2",
            "ISSUERISK__CLUSTER__CONSENSUS_RUNS": "3",
            "ISSUERISK__CLUSTER__MIN_CLUSTER_SIZE": "10",
            "ISSUERISK__CLUSTER__N_NEIGHBORS": "10",
            "ISSUERISK__KINDS__EVAL_FOLDS": "3",
            "ISSUERISK__KINDS__MODEL_CACHE_DIR": str(tmp_path / "kinds-models"),
            "ISSUERISK_STRICT_TABLES": "1",
            "ISSUERISK__RISK__BOOTSTRAP_ROUNDS": "30",
            "ISSUERISK__EXPLAIN__CLUSTERS": "1",
            "ISSUERISK__EXPLAIN__REPRESENTATIVES": "1",
            "ISSUERISK__FILTER__LANGUAGE_MIN_CHARS": "20",
            **extra,
        }
    )
    return env


def issuerisk_cli(env: dict[str, str], *args: str, ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess:
    """One ``issuerisk`` command in its own process; its exit status must be one of ``ok``."""
    proc = subprocess.run(
        [sys.executable, "-m", "issuerisk.cli", "--no-progress", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode in ok, proc.stdout[-3000:] + proc.stderr[-4000:]
    return proc


def test_issuerisk_run_grades_the_defect_patterns_and_not_the_feature_requests(tmp_path):
    data = tmp_path / "issues.jsonl"
    issues = corpus()
    data.write_text("".join(json.dumps(obj) + "\n" for _, obj in issues))
    issuerisk_cli(small_run_env(tmp_path), "run", str(data), "--framework", "pytorch")

    from issuerisk.conf import load_config
    from issuerisk.lakehouse import ArrowTables

    lake = ArrowTables(load_config(environ={"ISSUERISK_WAREHOUSE": str(tmp_path / "wh")}))
    run = lake.read("runs").to_pylist()
    pipeline = next(r for r in run if r["command"] == "run")
    metrics = json.loads(pipeline["metrics_json"])
    assert pipeline["status"] == "succeeded"
    assert set(metrics) >= {
        "ingest",
        "filter",
        "summarize",
        "mask",
        "profile",
        "embed",
        "drift",
        "classify",
        "cluster",
        "topics",
        "risk",
        "compare",
        "trends",
        "versions",
        "explain",
        "report",
        "factsheet",
    }
    assert lake.read("gold_trends").num_rows > 0 and set(metrics["trends"]["status"]) <= {
        "emerging",
        "growing",
        "steady",
        "fading",
        "too few",
    }
    risk = [r for r in lake.read("gold_risk").to_pylist() if r["scope"] == "all"]
    clusters = lake.read("gold_clusters").to_pylist()
    theme_of = {(obj["repository_url"].split("/repos/")[1], obj["number"]): theme for theme, obj in issues}
    by_cluster: dict[int, list[str]] = {}
    for c in clusters:
        key = (c["repository"], c["number"])
        if c["cluster"] >= 0 and key in theme_of:
            by_cluster.setdefault(c["cluster"], []).append(theme_of[key])
    feature_clusters = {c for c, themes in by_cluster.items() if themes.count("feature") > len(themes) / 2}
    assert feature_clusters, f"the feature requests form a cluster: {by_cluster}"
    for r in risk:
        if r["cluster"] in feature_clusters:
            assert r["grade"] is None and r["excluded_reason"].startswith("not a defect pattern")
    graded = [r for r in risk if r["grade"]]
    assert graded and all(r["defect_share"] >= 0.5 and r["repositories"] >= 3 for r in graded)
    assert all(0 <= r["grade_confidence"] <= 1 for r in graded)
    report = metrics["report"]["report"]
    page = open(report, encoding="utf-8").read()
    assert "Not graded" in page and "Before clustering: precautions" in page and 'class="expl"' in page
    checks = {
        (r["check"], r["scope"]) for r in lake.read("gold_profile", where={"run_id": pipeline["run_id"]}).to_pylist()
    }
    assert {("top_repository_share", "all"), ("label_coverage", "pytorch"), ("embedding_mmd", "all")} <= checks
    explained = lake.read("gold_explanations", where={"run_id": pipeline["run_id"]}).to_pylist()
    assert explained and {r["cluster"] for r in explained} <= {r["cluster"] for r in graded}
    one = explained[0]  # one issue explained again by the command, in its own process
    shown = issuerisk_cli(small_run_env(tmp_path), "explain", f"{one['repository']}#{one['number']}")
    assert f"{one['repository']}#{one['number']} in cluster {one['cluster']}" in shown.stdout.replace("\n", " ")
    sheet = json.load(open(metrics["factsheet"]["factsheet"].replace(".html", ".json"), encoding="utf-8"))
    assert [s["stage"] for s in sheet["narrative"]][:3] == ["ingest", "filter", "summarize"] and sheet[
        "replay"
    ].endswith(pipeline["run_id"])
    assert metrics["assign"]["assigned"] == metrics["assign"]["noise"] == 0, "the run placed nothing: none came later"

    # A repository ingested after the run: its issues are placed on the run's patterns, the run stays as it was.
    def run_state():
        return {
            name: sorted(map(str, lake.read(name, where={"run_id": pipeline["run_id"]}).to_pylist()))
            for name in ("gold_clusters", "gold_topics", "gold_risk", "gold_trends")
        }

    before = run_state()
    late = [(t, obj) for t, obj in corpus(per_theme_repo=8, repos=1, seed=7, name="synthetic-org/later") if t == "oom"]
    later = tmp_path / "later.jsonl"
    later.write_text("".join(json.dumps(obj) + "\n" for _, obj in late))
    env = small_run_env(tmp_path)
    codes = [
        issuerisk_cli(env, *command, ok=(0, 3)).returncode
        for command in (["ingest", str(later), "--framework", "pytorch"], ["assign"], ["watch"])
    ]
    assert codes == [0, 0, 3], "watch exits 3: eight new out-of-memory issues where about two were expected"
    assert run_state() == before, "assign changed none of the run's rows"
    assigning = max(
        (r for r in lake.read("runs").to_pylist() if r["command"] == "assign"), key=lambda r: r["started_at"]
    )
    assert json.loads(assigning["metrics_json"])["assign"]["refreshed_by"] == ["filter", "summarize", "embed"]
    placed = {(r["repository"], r["number"]): r for r in lake.read("gold_assignments").to_pylist()}
    silver_late = {(r["repository"], r["number"]) for r in lake.read("silver_issues").to_pylist()} - {
        (c["repository"], c["number"]) for c in clusters
    }
    assert silver_late and set(placed) == silver_late, "every issue the run did not cluster is placed or noise"
    assert all((r["cluster"] >= 0) != bool(r["reason"]) for r in placed.values()), "noise always says why"
    theme_of_cluster = {c: max(set(themes), key=themes.count) for c, themes in by_cluster.items()}
    late_theme = {(obj["repository_url"].split("/repos/")[1], obj["number"]): theme for theme, obj in late}
    agree = [theme_of_cluster.get(r["cluster"]) == late_theme[key] for key, r in placed.items()]
    assert sum(agree) >= 0.75 * len(agree), f"new issues land on their theme's pattern: {placed}"
    (alert,) = [r for r in lake.read("gold_alerts").to_pylist() if r["alert"]]
    assert theme_of_cluster[alert["cluster"]] == "oom" and alert["new_issues"] >= 6 and alert["p_value"] < 0.01
    assert len(alert["links"]) == alert["new_issues"] and alert["expected"] < alert["new_issues"] / 2


def test_issuerisk_run_on_one_repository_and_then_on_two(tmp_path, real_issues_dir):
    """REAL issues: a team analysing its own one repository (IBM/MAX-Object-Detector), then a second one
    (f90/Wave-U-Net) in the same warehouse. Too few labelled repositories to train a classifier on: both runs take
    the kinds from a model of the reference corpus (eight real repositories, Wave-U-Net among them, so the second
    run must leave it out), say so in the manifest, and grade with the cross-project rule off."""
    import shutil

    from issuerisk.conf import load_config
    from issuerisk.lakehouse import ArrowTables
    from tests.test_kinds import REFERENCE_REPOSITORIES

    reference = tmp_path / "reference"
    reference.mkdir()
    for name in REFERENCE_REPOSITORIES:
        shutil.copy(real_issues_dir / f"{name}.jsonl.gz", reference)
    env = small_run_env(
        tmp_path,
        ISSUERISK__KINDS__EVAL_FOLDS="5",
        ISSUERISK__KINDS__REFERENCE_CORPUS=json.dumps([str(reference)]),
        ISSUERISK__CLUSTER__MIN_CLUSTER_SIZE="6",
        ISSUERISK__CLUSTER__N_NEIGHBORS="8",
    )
    lake = ArrowTables(load_config(environ={"ISSUERISK_WAREHOUSE": str(tmp_path / "wh")}))
    for repositories, path, left_out in ((1, "IBM__MAX-Object-Detector", 0), (2, "f90__Wave-U-Net", 1)):
        proc = issuerisk_cli(env, "run", str(real_issues_dir / f"{path}.jsonl.gz"), "--framework", "tensorflow")
        assert "learning from the labelled issues of kinds.reference_corpus" in proc.stdout
        run = max((r for r in lake.read("runs").to_pylist() if r["command"] == "run"), key=lambda r: r["started_at"])
        metrics = json.loads(run["metrics_json"])
        assert run["status"] == "succeeded"
        model = metrics["classify"]["model"]
        assert metrics["classify"]["input_labelled_repositories"] == repositories
        assert model["source"] == "reference corpus" and model["model_id"].startswith("kinds-ref-lr-")
        assert model["left_out_input_repositories"] == left_out and model["input_check"]["issues"] > 0
        assert metrics["classify"]["evaluation"]["labelled_repositories"] == len(REFERENCE_REPOSITORIES) - left_out
        assert "cross-project rule off" in metrics["risk"]["rule_notes"]["all"]
        silver = lake.read("silver_issues", columns=["repository", "number"]).to_pylist()
        kinds = lake.read("silver_issue_kinds", columns=["repository", "number", "kind"]).to_pylist()
        assert len({r["repository"] for r in silver}) == repositories
        assert {(r["repository"], r["number"]) for r in kinds} == {(r["repository"], r["number"]) for r in silver}
        risk = [r for r in lake.read("gold_risk", where={"run_id": run["run_id"]}).to_pylist() if r["scope"] == "all"]
        assert risk and not any((r["excluded_reason"] or "").startswith("project-specific") for r in risk)
        sheet = json.load(open(metrics["factsheet"]["factsheet"].replace(".html", ".json"), encoding="utf-8"))
        assert sheet["models"]["issue_kinds"]["model_id"] == model["model_id"]
        assert any("cross-project rule off" in line for line in sheet["limitations"])
