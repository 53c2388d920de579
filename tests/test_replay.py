"""``issuerisk replay``: a recorded run re-run on its inputs as they were gives the same labels and grades.

The end-to-end test runs on REAL issues (eight small repositories of ../shared/data/lai2024-ml-issues),
replays the run, then ingests a ninth repository and rebuilds silver, replays again (the replay must still
read the old versions), and finally compacts and vacuums an input table so the recorded version is gone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from issuerisk.conf.loader import as_recorded
from issuerisk.replay import compare_answers, environment_differences, input_pins

FIRST = [
    "justinshenk__fer",
    "salesforce__decaNLP",
    "textpipe__textpipe",
    "waspinator__pycococreator",
    "XiaoMi__mobile-ai-bench",
    "mnicnc404__CartoonGan-tensorflow",
    "kLabUM__rrcf",
    "castorini__hedwig",
    "santi-pdp__pase",
    "akanimax__BMSG-GAN",
]
LATER = "IBM__MAX-Object-Detector"


def test_environment_differences_names_changed_packages_and_model_hash():
    recorded = {
        "packages": [("torch", "2.9.0"), ("ray", "2.50.0")],
        "runtime": [("cpu", "AMD EPYC"), ("embed_model", "m@sha256:aaa"), ("host", "a")],
    }
    diffs = environment_differences(
        recorded,
        {"torch": "2.9.0", "ray": "2.51.0", "numpy": "2.3"},
        {"cpu": "AMD EPYC", "embed_model": "m@sha256:bbb", "host": "b"},
    )
    assert ("package ray", "2.50.0", "2.51.0") in diffs
    assert ("package numpy", "absent", "2.3") in diffs
    assert ("embed_model", "m@sha256:aaa", "m@sha256:bbb") in diffs
    assert not any(d[0] in ("cpu", "host", "package torch") for d in diffs)


def test_compare_answers_counts_moved_issues_and_changed_grades():
    a = pd.DataFrame({"repository": ["r"] * 4, "number": [1, 2, 3, 4], "cluster": [0, 0, 1, -1]})
    b = pd.DataFrame({"repository": ["r"] * 4, "number": [1, 2, 3, 5], "cluster": [0, 0, 0, -1]})
    ra = pd.DataFrame({"scope": ["all", "all"], "cluster": [0, 1], "grade": ["H1", None], "n": [2, 1]})
    rb = pd.DataFrame({"scope": ["all"], "cluster": [0], "grade": ["H2"], "n": [3]})
    got = compare_answers(a, b, ra, rb)
    assert got["label_differences"] == 3  # #3 moved, #4 only in a, #5 only in b
    assert got["grade_differences"] == 2 and got["issues"] == 5
    same = compare_answers(a, a, ra, ra)
    assert same["label_differences"] == 0 and same["grade_differences"] == 0 and same["ari"] == 1.0


def test_a_config_recorded_before_the_epoch_switch_replays_with_umaps_own_switch():
    from issuerisk.clustering.backends import umap_epochs
    from issuerisk.conf.settings import ClusterConfig

    old = ClusterConfig.model_validate(
        as_recorded({"cluster": {"method": "consensus"}})["cluster"]
    )  # recorded before the key
    assert umap_epochs(old, 8000) == 500  # what umap-learn ran under 10,000 points
    new = ClusterConfig.model_validate(
        as_recorded({"cluster": {"method": "consensus", "fewer_epochs_from": 5000}})["cluster"]
    )
    assert umap_epochs(new, 8000) == 200 and umap_epochs(new, 4999) == 500
    assert umap_epochs(new, 40000) == 200, "recorded before cluster.fewest_epochs_from: 200 however many"
    assert umap_epochs(ClusterConfig(), 40000) == 100 and umap_epochs(ClusterConfig(), 19999) == 200
    assert umap_epochs(ClusterConfig(n_epochs=50), 8000) == 50


def test_a_config_recorded_before_the_onnx_default_keeps_torch_vectors():
    """Runs recorded before embed.backend existed embedded with torch under the plain model name: replay and assign
    must read those vectors, not look for ONNX ones under today's default."""
    from issuerisk.conf.settings import EmbedConfig

    old = EmbedConfig.model_validate(
        as_recorded({"embed": {"model": "sentence-transformers/all-MiniLM-L6-v2"}})["embed"]
    )
    assert old.backend == "torch" and old.key == "sentence-transformers/all-MiniLM-L6-v2"
    chosen = as_recorded({"embed": {"model": "m", "backend": "onnx"}})["embed"]
    assert EmbedConfig.model_validate(chosen).key == "onnx:m"


def test_input_pins_skip_what_the_replay_writes():
    row = {
        "command": "run",
        "tables_read": [("silver_issues", 3), ("gold_clusters", 7), ("runs", 9)],
        "tables_written": [("silver_issues", 4), ("gold_embeddings", 2), ("gold_risk", 5)],
    }
    assert input_pins(row) == {"gold_embeddings": 2, "silver_issues": 4}


def _cli(env, *args, timeout=1200):
    return subprocess.run(
        [sys.executable, "-m", "issuerisk.cli", "--no-progress", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.slow
def test_replay_is_identical_on_real_issues_and_reads_the_old_versions_after_a_later_ingest(tmp_path, real_issues_dir):
    from deltalake import DeltaTable

    from issuerisk.conf import load_config
    from issuerisk.lakehouse import ArrowTables

    env = {k: v for k, v in os.environ.items() if not k.startswith("ISSUERISK")}
    env.update(
        {
            "ISSUERISK_WAREHOUSE": str(tmp_path / "wh"),
            "ISSUERISK__SPARK__MASTER": "local[2]",
            "ISSUERISK__SPARK__SHUFFLE_PARTITIONS": "2",
            "ISSUERISK__SPARK__DRIVER_MEMORY": "1g",
            "ISSUERISK__RAY__NUM_CPUS": "2",
            "ISSUERISK__CLUSTER__CONSENSUS_RUNS": "3",
            "ISSUERISK__CLUSTER__MIN_CLUSTER_SIZE": "8",
            "ISSUERISK__CLUSTER__N_NEIGHBORS": "10",
            "ISSUERISK__KINDS__EVAL_FOLDS": "3",
            "ISSUERISK__RISK__BOOTSTRAP_ROUNDS": "30",
            "ISSUERISK__EXPLAIN__CLUSTERS": "1",
            "ISSUERISK__EXPLAIN__REPRESENTATIVES": "1",
        }
    )
    files = [str(real_issues_dir / f"{name}.jsonl.gz") for name in FIRST]
    first = _cli(env, "run", *files, "--framework", "pytorch")
    assert first.returncode == 0, first.stderr[-4000:]
    lake = ArrowTables(load_config(environ=env))

    def row(command):
        rows = sorted(
            (r for r in lake.read("runs").to_pylist() if r["command"] == command), key=lambda r: r["started_at"]
        )
        return rows[-1]

    def answers(run_id):
        labels = {
            (r["repository"], r["number"]): r["cluster"]
            for r in lake.read("gold_clusters", where={"run_id": run_id}).to_pylist()
        }
        grades = {
            (r["scope"], r["cluster"]): r["grade"] for r in lake.read("gold_risk", where={"run_id": run_id}).to_pylist()
        }
        return labels, grades

    original = row("run")
    labels, grades = answers(original["run_id"])
    assert len(labels) > 200 and len(set(labels.values())) > 2 and any(grades.values())

    replayed = _cli(env, "replay", original["run_id"])
    assert replayed.returncode == 0, replayed.stderr[-4000:]
    assert "identical labels and grades" in replayed.stdout
    again = row("replay")
    assert answers(again["run_id"]) == (labels, grades)
    assert json.loads(again["config_json"]) == json.loads(original["config_json"])
    assert dict(again["runtime"])["replay_of"] == original["run_id"]
    assert "all-MiniLM-L6-v2@sha256:" in dict(original["runtime"])["embed_model"]

    # a later ingest and silver build move the current versions on; a replay still reads the recorded ones
    silver_then = dict(original["tables_written"])["silver_issues"]
    later = _cli(env, "ingest", str(real_issues_dir / f"{LATER}.jsonl.gz"), "--framework", "pytorch")
    assert later.returncode == 0, later.stderr[-4000:]
    rebuilt = _cli(env, "filter")
    assert rebuilt.returncode == 0, rebuilt.stderr[-4000:]
    assert lake.version("silver_issues") > silver_then
    assert lake.read("silver_issues").num_rows > len(labels)
    second = _cli(env, "replay", original["run_id"])
    assert second.returncode == 0, second.stderr[-4000:]
    again = row("replay")
    assert answers(again["run_id"]) == (labels, grades)
    assert dict(again["tables_read"])["silver_issues"] == silver_then

    # OPTIMIZE + VACUUM remove the files the recorded version needs: the replay says so and runs nothing
    table = DeltaTable(lake.path("silver_issues"))
    table.optimize.compact()
    table.vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
    gone = _cli(env, "replay", original["run_id"], timeout=300)
    assert gone.returncode == 2
    assert f"silver_issues@v{silver_then}" in gone.stderr and "VACUUM" in gone.stderr, gone.stderr
