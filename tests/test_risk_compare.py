"""Risk and comparison stages on synthetic runs (tests.test_topics.seed_run), the chi-square math, and the README's SQL examples."""

from __future__ import annotations

import pandas as pd
import pytest

from issuerisk.analysis.compare import chi_square, contingency
from issuerisk.analysis.gold import resolve_run_id
from issuerisk.analysis.risk import excluded_clusters, scopes
from issuerisk.constants import grade_order_sql
from issuerisk.lakehouse import ArrowTables
from tests.conftest import make_ctx
from tests.test_topics import RUN_ID, seed_run

# The README's ad hoc queries; {db} is the project's database (issuerisk by default).
EXAMPLE_QUERIES = {
    "top_risks_per_framework": """
        SELECT scope, cluster, label, n, round(p_k, 3) AS p_k, grade, action FROM (
          SELECT *, row_number() OVER (PARTITION BY scope ORDER BY
                   array_position(array('L1', 'L2', 'M1', 'M2', 'H1', 'H2', 'H3'), grade) DESC, n DESC) AS rank
          FROM {db}.gold_risk WHERE run_id = (SELECT max(run_id) FROM {db}.gold_risk))
        WHERE rank <= 3 ORDER BY scope, rank""",
    "mttr_by_cluster": """
        SELECT cluster, label, n, round(mttr_hours / 24, 1) AS mttr_days, round(median_ttr_hours / 24, 1) AS median_days,
               round(open_share, 2) AS open_share, grade
        FROM {db}.gold_risk WHERE scope = 'all' AND run_id = (SELECT max(run_id) FROM {db}.gold_risk)
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
    issues = pd.DataFrame({"cluster": [-1, 0, 0, 1, 2, 2], "framework": ["pytorch", "pytorch", "unknown", "keras", "keras", "pytorch"]})
    counts = contingency(issues, clusters=[0, 1])
    assert counts.to_dict() == {"pytorch": {0: 1, 1: 0}, "keras": {0: 0, 1: 1}}


def test_excluded_clusters_by_id_and_label_word():
    labels = {0: "docs / typo / readme", 1: "cuda / memory", 2: "documentation"}
    assert excluded_clusters([5], ["docs", "question"], labels) == {0, 5}


def test_resolve_run_id_rejects_sql_in_a_run_id(base_cfg):
    with pytest.raises(ValueError, match="run id \"x' OR '1'='1\" is not valid"):
        resolve_run_id(ArrowTables(base_cfg), "x' OR '1'='1")
    assert resolve_run_id(ArrowTables(base_cfg), "20260101T000000Z-ab12") == "20260101T000000Z-ab12"


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
    assert counts["scopes"] == {"all": 3, "pytorch": 3, "tensorflow": 3, "keras": 3}
    assert counts["noise_issues"] == 4 and counts["missing_from_silver"] == 0
    rows = {(r["scope"], r["cluster"]): r for r in read("gold_risk").where(f"run_id = '{RUN_ID}'").collect()}
    assert len(rows) == 12
    assert [rows[("all", c)]["n"] for c in (0, 1, 2)] == [8, 14, 18]
    assert [rows[("all", c)]["p_k"] for c in (0, 1, 2)] == pytest.approx([0.2, 0.35, 0.45])
    assert [rows[("all", c)]["mttr_hours"] for c in (0, 1, 2)] == pytest.approx([9.0, 57.5, 511.5])
    assert [rows[("all", c)]["grade"] for c in (0, 1, 2)] == ["H1", "H2", "H3"]
    assert rows[("all", 2)]["open_share"] == pytest.approx(6 / 18)
    assert rows[("keras", 0)]["likelihood"] == "P3"

    result = compare.run(ctx)
    assert result["frameworks"] == ["pytorch", "tensorflow", "keras"] and result["dof"] == 4
    assert result["p_value"] < 0.001
    cmp = {(r["cluster"], r["framework"]): r for r in read("gold_framework_comparison").where(f"run_id = '{RUN_ID}'").collect()}
    assert len(cmp) == 9
    for cluster, framework in ((0, "pytorch"), (1, "keras"), (2, "tensorflow")):
        assert cmp[(cluster, framework)]["std_residual"] > 1.96
        assert cmp[(cluster, framework)]["grade"] == rows[(framework, cluster)]["grade"]
    assert cmp[(2, "keras")]["std_residual"] < -1.96
    assert cmp[(1, "keras")]["share"] == pytest.approx(10 / 12)

    rerun = risk.run(make_ctx(ctx.cfg.updated("risk", excluded_clusters=[0]), spark), RUN_ID)
    assert rerun["scopes"]["all"] == 2
    left = read("gold_risk").where(f"run_id = '{RUN_ID}' AND cluster = 0").count()
    assert left == 0

    db = ctx.cfg.project.database
    top = spark.sql(EXAMPLE_QUERIES["top_risks_per_framework"].format(db=db)).collect()
    assert [(r["scope"], r["cluster"], r["grade"]) for r in top if r["scope"] == "all"] == [("all", 2, "H3"), ("all", 1, "H1")]
    mttr = spark.sql(EXAMPLE_QUERIES["mttr_by_cluster"].format(db=db)).collect()
    assert [(r["cluster"], r["mttr_days"]) for r in mttr] == [(2, 21.3), (1, 2.4)]
    issues = spark.sql(EXAMPLE_QUERIES["issues_of_one_cluster"].format(db=db)).collect()
    assert len(issues) == 18 and sum(r["is_closed"] for r in issues) == 12
