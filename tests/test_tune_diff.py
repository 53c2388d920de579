"""``issuerisk tune`` and ``issuerisk diff`` on SYNTHETIC planted data (delta-rs only, no Spark)."""

from __future__ import annotations

import pyarrow as pa
import pytest
import yaml

from tests.conftest import make_ctx


def _planted_vectors_in_tables(ctx, n=150):
    from bench.embed_cluster import planted_vectors
    from issuerisk.ray_tasks.embed import gold_rows
    from issuerisk.schemas.gold import GOLD_EMBEDDINGS
    from issuerisk.schemas.silver import SILVER_ISSUES, SILVER_SUMMARIES
    from issuerisk.vectors import current_texts
    from tests.test_embed import _issue, _summary, _write

    vectors, labels = planted_vectors(n, 3, 32, noise_norm=0.4, seed=4)
    repo = "synthetic/tune"
    _write(ctx, SILVER_ISSUES, [_issue(repo, i) for i in range(n)])
    _write(ctx, SILVER_SUMMARIES, [_summary(ctx.cfg, repo, i, f"text {i}", f"k{i}") for i in range(n)])
    ctx.lake.arrow.merge(
        GOLD_EMBEDDINGS, gold_rows(current_texts(ctx.lake.arrow, ctx.cfg), vectors, ctx.cfg.embed.key, "seed")
    )
    return labels


@pytest.mark.slow
def test_tune_writes_its_trials_the_best_config_and_a_page(cfg, tmp_path):
    from issuerisk.analysis.tune import SPACE, tune

    ctx = make_ctx(cfg.updated("cluster", jit_cache_dir=str(tmp_path / "numba")))
    _planted_vectors_in_tables(ctx)
    result = tune(ctx, trials=3, timeout=300, runs=2, max_noise=0.5, write_config=str(tmp_path / "best.yaml"))
    trials = ctx.lake.arrow.read("gold_tuning").to_pylist()
    assert len(trials) == result["trials"] == 3 and result["complete"] >= 1
    best = next(t for t in trials if t["trial"] == result["best_trial"])
    assert best["state"] == "complete" and best["objective"] == pytest.approx(best["dbcv"] + best["stability"])
    written = yaml.safe_load((tmp_path / "best.yaml").read_text())["cluster"]
    assert (
        set(written) == set(SPACE) | {"member_selection"}
        and written["n_neighbors"] == result["best_params"]["n_neighbors"]
    )
    page = open(result["page"], encoding="utf-8").read()
    assert "Clustering parameter search" in page and "unsafe-inline" not in page


def test_tune_refuses_bad_budgets(cfg):
    from issuerisk.analysis.tune import tune

    with pytest.raises(ValueError, match="need --trials >= 1"):
        tune(make_ctx(cfg), trials=0)


def test_diff_names_splits_merges_and_grade_changes(cfg):
    from issuerisk.analysis.diff import diff
    from issuerisk.schemas.gold import GOLD_CLUSTERS, GOLD_RISK, GOLD_TOPICS

    ctx = make_ctx(cfg)
    plan = {
        "ra": {0: range(0, 40), 1: range(40, 60), 2: range(60, 80)},
        "rb": {5: range(0, 20), 6: range(20, 40), 7: range(40, 80)},
    }
    rows, topics, risk = [], [], []
    for run_id, clusters in plan.items():
        for c, members in clusters.items():
            rows += [
                {
                    "repository": "o/r",
                    "number": i,
                    "cluster": c,
                    "probability": 1.0,
                    "outlier_score": 0.0,
                    "x": 0.0,
                    "y": 0.0,
                    "model": "m",
                    "run_id": run_id,
                }
                for i in members
            ]
            topics.append(
                {
                    "run_id": run_id,
                    "cluster": c,
                    "label": f"c{c}",
                    "keywords": [f"w{c}", "shared"],
                    "weights": [1.0, 0.5],
                    "n": len(members),
                    "pattern_id": "P-kept" if c in (0, 5) else f"{run_id}:{c}",
                }
            )
            risk.append(
                {"run_id": run_id, "scope": "all", "cluster": c, "n": len(members), "grade": "H1" if c == 0 else "M1"}
            )
    ctx.lake.arrow.merge(GOLD_CLUSTERS, pa.Table.from_pylist(rows, schema=GOLD_CLUSTERS.arrow))
    ctx.lake.arrow.merge(GOLD_TOPICS, pa.Table.from_pylist(topics, schema=GOLD_TOPICS.arrow))
    ctx.lake.arrow.merge(GOLD_RISK, pa.Table.from_pylist(risk, schema=GOLD_RISK.arrow))
    got = diff(ctx, "ra", "rb")
    assert got["split"] == {"0": [5, 6]} and got["merged"] == {"7": [1, 2]} and got["new"] == [] and got["gone"] == []
    assert got["issues_in_both"] == 80 and 0 < got["ari"] < 1
    assert got["shared_patterns"] == 1 and got["grade_changes"] == 1
    with pytest.raises(ValueError, match="run 'rc' has no rows in gold_clusters"):
        diff(ctx, "ra", "rc")
