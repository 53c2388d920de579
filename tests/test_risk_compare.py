"""Risk and comparison stages on synthetic runs (tests.test_topics.seed_run), the chi-square math, and the README's SQL
examples."""

from __future__ import annotations

import pandas as pd
import pytest

from issuerisk.analysis.compare import chi_square, contingency
from issuerisk.analysis.risk import Broadness, ClusterFacts, cluster_facts, exclusion, scopes, severity_check
from issuerisk.conf.settings import RiskConfig
from issuerisk.constants import grade_order_sql
from issuerisk.gold import clustering_run, resolve_run_id
from issuerisk.lakehouse import ArrowTables
from tests.conftest import make_ctx
from tests.test_topics import RUN_ID, seed_run

# The README's ad hoc queries; {db} is the project's database (issuerisk by default).
EXAMPLE_QUERIES = {
    "top_risks_per_framework": """
        SELECT scope, cluster, label, n, round(p_k, 3) AS p_k, grade, action FROM (
          SELECT *, row_number() OVER (PARTITION BY scope ORDER BY
                   array_position(array('L1', 'L2', 'M1', 'M2', 'H1', 'H2', 'H3'), grade) DESC, n DESC) AS rank
          FROM {db}.gold_risk WHERE grade IS NOT NULL AND run_id = (SELECT max(run_id) FROM {db}.gold_risk))
        WHERE rank <= 3 ORDER BY scope, rank""",
    "mttr_by_cluster": """
        SELECT cluster, label, n, round(mttr_hours / 24, 1) AS mttr_days,
               round(median_ttr_hours / 24, 1) AS median_days, round(open_share, 2) AS open_share, grade
        FROM {db}.gold_risk WHERE scope = 'all' AND grade IS NOT NULL
          AND run_id = (SELECT max(run_id) FROM {db}.gold_risk)
        ORDER BY mttr_hours DESC NULLS LAST""",
    "issues_of_one_cluster": """
        SELECT i.framework, i.title, i.html_url, i.is_closed, round(i.resolution_hours, 1) AS hours
        FROM {db}.gold_clusters c JOIN {db}.silver_issues i USING (repository, number)
        WHERE c.run_id = (SELECT max(run_id) FROM {db}.gold_clusters) AND c.cluster = 2
        ORDER BY c.probability DESC, i.number LIMIT 20""",
}


def test_chi_square_2x2_residuals_square_to_the_statistic():
    counts = pd.DataFrame([[10, 20], [30, 40]], index=[0, 1], columns=["pytorch", "keras"])
    expected, residuals, test = chi_square(counts)
    assert expected.to_numpy().ravel() == pytest.approx([12.0, 18.0, 28.0, 42.0])
    assert test.dof == 1
    assert (residuals.to_numpy() ** 2).ravel() == pytest.approx([test.chi2] * 4)
    assert residuals.at[0, "pytorch"] < 0 < residuals.at[0, "keras"]


def test_chi_square_needs_two_clusters_and_two_frameworks():
    _, residuals, test = chi_square(pd.DataFrame([[3, 4]], index=[0], columns=["pytorch", "keras"]))
    assert test.chi2 is None and test.p_value is None and residuals.isna().all().all()


def test_chi_square_leaves_empty_framework_out():
    counts = pd.DataFrame([[10, 0, 20], [30, 0, 40]], index=[0, 1], columns=["pytorch", "tensorflow", "keras"])
    expected, residuals, test = chi_square(counts)
    assert test.dof == 1
    assert residuals["tensorflow"].isna().all() and not residuals["keras"].isna().any()


def test_contingency_keeps_the_given_clusters_and_known_frameworks():
    issues = pd.DataFrame(
        {"cluster": [-1, 0, 0, 1, 2, 2], "framework": ["pytorch", "pytorch", "unknown", "keras", "keras", "pytorch"]}
    )
    counts = contingency(issues, clusters=[0, 1])
    assert counts.to_dict() == {"pytorch": {0: 1, 1: 0}, "keras": {0: 0, 1: 1}}


def facts(defect=0.9, repos=5, top=0.2, stability=0.9, mix=None):
    return ClusterFacts(
        n=20,
        defect_share=defect,
        label_defect_share=None,
        kind_mix=mix or {"defect": defect, "feature": 1 - defect},
        repositories=repos,
        top_repository="o/top",
        top_repository_share=top,
        stability=stability,
    )


def test_a_defect_share_of_exactly_the_minimum_is_graded_and_below_it_is_not():
    rules = RiskConfig()
    assert exclusion(1, "", facts(defect=0.5), facts(), rules) is None
    reason = exclusion(1, "", facts(defect=0.18, mix={"defect": 0.18, "feature": 0.82}), facts(), rules)
    assert reason == "not a defect pattern: 82% feature requests (defect share 18% < 50%)"


def test_project_specific_and_unstable_clusters_are_named():
    rules = RiskConfig()
    assert exclusion(1, "", facts(), facts(repos=2), rules) == "project-specific: 2 repositories (< 3), mostly o/top"
    assert exclusion(1, "", facts(), facts(top=0.96), rules) == "project-specific: 96% of its issues from o/top (> 50%)"
    assert exclusion(1, "", facts(), facts(top=0.5), rules) is None
    assert exclusion(1, "", facts(stability=0.41), facts(), rules).startswith("unstable: bootstrap Jaccard 0.41 < 0.60")


def test_a_catch_all_is_too_broad_when_many_of_its_words_do_not_set_it_apart():
    rules = RiskConfig()
    catch_all = Broadness(spread=1.4, generic_share=0.6, generic_keywords=("error", "model", "code", "run", "use"))
    reason = exclusion(4, "", facts(), facts(), rules, catch_all)
    assert reason.startswith(
        "too broad: 60% of its top words by c-TF-IDF (error, model, code, run, use) name a framework or failing as "
        "such, or are not twice as common"
    )
    assert "1.40x the median cluster's" in reason
    assert exclusion(4, "", facts(), facts(), rules, Broadness(1.4, 0.3, ("error",))) is None  # specific words
    assert exclusion(4, "", facts(), facts(), rules, Broadness(0.9, 0.4, ("a", "b", "c", "d"))).startswith("too broad")
    assert exclusion(4, "", facts(), facts(), rules, Broadness()) is None  # topics of a run before breadth was measured
    assert exclusion(4, "catch", facts(), facts(), RiskConfig(include_clusters=["catch"]), catch_all) is None


def test_the_grade_order_is_checked_against_severity_labels_whatever_the_answer():
    """SYNTHETIC: three graded patterns whose severe-label shares rise (then fall) with the grade."""
    issues = pd.DataFrame(
        {
            "cluster": [0] * 4 + [1] * 4 + [2] * 4,
            "labels": [["bug"]] * 4 + [["P1"], ["bug"], None, []] + [["critical"], ["Regression"], ["bug"], ["p3"]],
        }
    )
    graded = [{"cluster": 2, "grade": "H3"}, {"cluster": 1, "grade": "H1"}, {"cluster": 0, "grade": "M1"}]
    pattern = RiskConfig().severity_labels
    agrees = severity_check(issues, graded, pattern, seed=0)
    assert (agrees["patterns"], agrees["severe_issues"], agrees["rho"]) == (3, 3, 1.0)
    assert agrees["low"] <= agrees["rho"] <= agrees["high"]
    reversed_grades = [{**g, "grade": grade} for g, grade in zip(graded, ["M1", "H1", "H3"])]
    assert severity_check(issues, reversed_grades, pattern, seed=0)["rho"] == -1.0
    none = severity_check(issues.assign(labels=[["bug"]] * 12), graded, pattern, seed=0)
    assert none["rho"] is None and "no pattern with a severe label" in none["why"]


def test_forced_lists_win_by_id_or_word():
    rules = RiskConfig(include_clusters=[7, "oom"], exclude_clusters=["docs", 3])
    text = "readme docs typo / docs / link"
    assert exclusion(2, text, facts(), facts(), rules) == "forced out by risk.exclude_clusters ('docs')"
    assert exclusion(3, "", facts(), facts(), rules) == "forced out by risk.exclude_clusters (id 3)"
    assert exclusion(7, "", facts(defect=0.1), facts(repos=1), rules) is None
    assert exclusion(8, "cuda oom during training", facts(defect=0.1), facts(), rules) is None
    assert exclusion(8, "boom", facts(defect=0.1), facts(), rules).startswith("not a defect pattern"), (
        "words match whole words only"
    )


def test_cluster_facts_from_kinds_and_repositories():
    group = pd.DataFrame(
        {
            "kind": ["defect", "defect", "feature", None],
            "label_kind": ["defect", None, "feature", None],
            "repository": ["a/x", "a/x", "b/y", "c/z"],
            "stability": [0.8] * 4,
        }
    )
    f = cluster_facts(group)
    assert (
        f.defect_share,
        f.label_defect_share,
        f.repositories,
        f.top_repository,
        f.top_repository_share,
        f.stability,
    ) == (pytest.approx(2 / 3), 0.5, 3, "a/x", 0.5, 0.8)
    assert f.kind_mix == {"defect": pytest.approx(0.6667, abs=1e-4), "feature": pytest.approx(0.3333, abs=1e-4)}


def test_resolve_run_id_rejects_sql_in_a_run_id(base_cfg):
    with pytest.raises(ValueError, match="run id \"x' OR '1'='1\" is not valid"):
        resolve_run_id(ArrowTables(base_cfg), "x' OR '1'='1")
    assert resolve_run_id(ArrowTables(base_cfg), "20260101T000000Z-ab12") == "20260101T000000Z-ab12"


def test_without_a_run_id_the_newest_clustering_run_that_succeeded_is_analysed(cfg):
    import pyarrow as pa

    from issuerisk.gold import NoClusteringError
    from issuerisk.ledger import Run
    from issuerisk.schemas.gold import GOLD_CLUSTERS

    tables = ArrowTables(cfg)
    rows = [
        {
            "repository": "a/b",
            "number": 1,
            "cluster": 0,
            "probability": 1.0,
            "outlier_score": 0.0,
            "x": 0.0,
            "y": 0.0,
            "model": "m",
            "run_id": run_id,
        }
        for run_id in ("20260101T000000Z-old", "20260102T000000Z-failed", "20260103T000000Z-running")
    ]
    tables.merge(GOLD_CLUSTERS, pa.Table.from_pylist(rows[1:], schema=GOLD_CLUSTERS.arrow))
    Run(cfg, "run", run_id="20260102T000000Z-failed").save("failed", "boom")
    Run(cfg, "run", run_id="20260103T000000Z-running").save("running")
    with pytest.raises(
        NoClusteringError,
        match="no clustering run in gold_clusters succeeded; the newest, 20260103T000000Z-running, is running",
    ):
        resolve_run_id(tables, None)
    tables.merge(GOLD_CLUSTERS, pa.Table.from_pylist(rows[:1], schema=GOLD_CLUSTERS.arrow))
    Run(cfg, "cluster", run_id="20260101T000000Z-old").save("succeeded")
    assert resolve_run_id(tables, None) == "20260101T000000Z-old"
    assert resolve_run_id(tables, "20260103T000000Z-running") == "20260103T000000Z-running", "named, any run is used"


def test_the_readme_grade_order_is_the_one_fact():
    assert grade_order_sql() == "array_position(array('L1', 'L2', 'M1', 'M2', 'H1', 'H2', 'H3'), grade)"
    assert grade_order_sql() in EXAMPLE_QUERIES["top_risks_per_framework"]


def test_scopes_are_all_then_present_frameworks():
    assert scopes(pd.DataFrame({"framework": ["keras", "unknown", "pytorch"]})) == ["all", "pytorch", "keras"]


@pytest.mark.slow
def test_risk_and_compare_stages_on_a_synthetic_run(ctx, spark):
    from issuerisk.analysis import compare, risk

    seed_run(ctx)
    read = lambda name: ctx.lake.spark.read(name)  # noqa: E731
    counts = risk.run(ctx)
    # Issues of each cluster spread over synthetic/<framework>-repo-0..2 (number % 3): over all frameworks every
    # cluster spans 5-7 repositories, none holding more than 29 %; within one framework a cluster of 1 or 2 issues
    # comes from fewer than 3 repositories, so it is project-specific there.
    assert counts["graded"] == {"all": 3, "pytorch": 2, "tensorflow": 1, "keras": 1}
    assert counts["excluded"] == {"all": 0, "pytorch": 1, "tensorflow": 2, "keras": 2}
    assert counts["missing_from_silver"] == 0
    rows = {(r["scope"], r["cluster"]): r for r in read("gold_risk").where(f"run_id = '{RUN_ID}'").collect()}
    assert len(rows) == 12
    assert [rows[("all", c)]["n"] for c in (0, 1, 2)] == [8, 14, 18]
    assert [rows[("all", c)]["p_k"] for c in (0, 1, 2)] == pytest.approx([0.2, 0.35, 0.45])
    assert [rows[("all", c)]["mttr_hours"] for c in (0, 1, 2)] == pytest.approx([9.0, 57.5, 511.5])
    # All created at one instant with updated_at = created_at: the snapshot censors open issues at 0 hours,
    # so the restricted mean equals the closed mean here.
    assert [rows[("all", c)]["impact_hours"] for c in (0, 1, 2)] == pytest.approx([9.0, 57.5, 511.5])
    assert [rows[("all", c)]["grade"] for c in (0, 1, 2)] == ["H1", "H2", "H3"]
    assert rows[("all", 2)]["open_share"] == pytest.approx(6 / 18)
    assert rows[("all", 1)]["repositories"] == 7 and rows[("all", 1)]["top_repository_share"] == pytest.approx(4 / 14)
    for c in (0, 1, 2):
        r = rows[("all", c)]
        assert (
            0 <= r["grade_confidence"] <= 1
            and r["p_k_low"] <= r["p_k"] <= r["p_k_high"]
            and r["excluded_reason"] is None
        )
        assert sum(r["grade_shares"].values()) == pytest.approx(1.0, abs=1e-3)
    keras0 = rows[("keras", 0)]
    assert keras0["grade"] is None and keras0["p_k"] is None
    assert keras0["excluded_reason"] == "project-specific: 1 repository (< 3), mostly synthetic/keras-repo-2"
    assert [rows[("pytorch", c)]["grade"] for c in (0, 2)] == ["H1", "H3"]

    result = compare.run(ctx)
    assert result["frameworks"] == ["pytorch", "tensorflow", "keras"] and result["dof"] == 4
    assert result["p_value"] < 0.001
    cmp = {
        (r["cluster"], r["framework"]): r
        for r in read("gold_framework_comparison").where(f"run_id = '{RUN_ID}'").collect()
    }
    assert len(cmp) == 9
    for cluster, framework in ((0, "pytorch"), (1, "keras"), (2, "tensorflow")):
        assert cmp[(cluster, framework)]["std_residual"] > 1.96
        assert cmp[(cluster, framework)]["grade"] == rows[(framework, cluster)]["grade"] is not None
    assert cmp[(2, "keras")]["std_residual"] < -1.96
    assert cmp[(1, "keras")]["share"] == pytest.approx(10 / 12)

    # Issue 25.6: grading RUN_ID again with another config never rewrites RUN_ID's rows: derived rows go under the
    # new command's own run id and name the run they grade.
    regrade = make_ctx(ctx.cfg.updated("risk", exclude_clusters=[0]), spark)
    rerun = risk.run(regrade, RUN_ID)
    assert rerun["graded"]["all"] == 2 and rerun["run_id"] == regrade.run.run_id and rerun["derived_from"] == RUN_ID
    derived = read("gold_risk").where(f"run_id = '{regrade.run.run_id}' AND scope = 'all' AND cluster = 0").collect()
    assert [(r["grade"], r["excluded_reason"], r["derived_from"]) for r in derived] == [
        (None, "forced out by risk.exclude_clusters (id 0)", RUN_ID)
    ]
    kept = read("gold_risk").where(f"run_id = '{RUN_ID}' AND scope = 'all' AND cluster = 0").collect()
    assert [(r["grade"], r["excluded_reason"], r["derived_from"]) for r in kept] == [("H1", None, None)]
    regrade.run.stage("risk", rerun)  # as the runner does, then the command ends
    regrade.run.save("succeeded")
    tables = regrade.lake.arrow
    assert clustering_run(tables, regrade.run.run_id) == RUN_ID and clustering_run(tables, RUN_ID) == RUN_ID
    assert resolve_run_id(tables, None) == regrade.run.run_id, "the newest succeeded grading is what a report shows"
    compared = compare.run(regrade, regrade.run.run_id)  # reads RUN_ID's clusters, the derived grades
    assert compared["run_id"] == regrade.run.run_id

    db = ctx.cfg.project.database
    top = spark.sql(EXAMPLE_QUERIES["top_risks_per_framework"].format(db=db)).collect()
    assert [(r["scope"], r["cluster"], r["grade"]) for r in top if r["scope"] == "all"] == [
        ("all", 2, "H3"),
        ("all", 1, "H1"),
    ]
    mttr = spark.sql(EXAMPLE_QUERIES["mttr_by_cluster"].format(db=db)).collect()
    assert [(r["cluster"], r["mttr_days"]) for r in mttr] == [(2, 21.3), (1, 2.4)]
    issues = spark.sql(EXAMPLE_QUERIES["issues_of_one_cluster"].format(db=db)).collect()
    assert len(issues) == 18 and sum(r["is_closed"] for r in issues) == 12


def test_category_rows_share_each_framework_s_defects_by_category():
    from issuerisk.analysis.compare import category_rows

    issues = pd.DataFrame(
        {
            "cluster": [0] * 6 + [1] * 4 + [2] * 5,
            "framework": ["pytorch"] * 5 + ["keras"] + ["keras"] * 4 + ["pytorch"] * 3 + ["unknown"] * 2,
        }
    )
    rows = {
        (r["category"], r["framework"]): r
        for r in category_rows("r", issues, {0: "GPU usage", 1: "API", 2: "GPU usage"})
    }
    assert rows[("GPU usage", "pytorch")]["n"] == 8 and rows[("GPU usage", "pytorch")]["share"] == 1.0
    assert rows[("API", "keras")]["share"] == pytest.approx(4 / 5) and rows[("GPU usage", "pytorch")]["clusters"] == 2
    assert rows[("GPU usage", "pytorch")]["std_residual"] > 0 > rows[("API", "pytorch")]["std_residual"]
    assert ("GPU usage", "unknown") not in rows
