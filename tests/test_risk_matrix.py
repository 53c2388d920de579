"""Boundary tests of the pure risk matrix (no Spark). All frames here are small synthetic examples."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from issuerisk.grading.matrix import (
    RiskInputError,
    action,
    assess,
    grade,
    impact_level,
    likelihood_band,
    resolution_stats,
    severity,
    tertiles,
)


@pytest.mark.parametrize(
    ("p_k", "band"),
    [
        (0.0, "P1"),
        (0.0099999, "P1"),
        (0.01, "P2"),
        (0.0499999, "P2"),
        (0.05, "P3"),
        (0.1499999, "P3"),
        (0.15, "P4"),
        (0.5, "P4"),
        (1.0, "P4"),
    ],
)
def test_likelihood_band_boundaries(p_k, band):
    assert likelihood_band(p_k) == band


@pytest.mark.parametrize("bad", [-0.01, 1.01, math.nan, None, "0.1"])
def test_likelihood_band_rejects_non_shares(bad):
    with pytest.raises(RiskInputError, match=r"P_k must be a share in \[0, 1\]"):
        likelihood_band(bad)


def test_tertiles_of_three_values():
    assert tertiles([30.0, 10.0, 20.0]) == pytest.approx((16.666666, 23.333333))


def test_tertiles_ignore_clusters_without_mttr():
    assert tertiles([None, 10.0, math.nan, 40.0]) == pytest.approx((20.0, 30.0))


def test_tertiles_of_one_and_of_none():
    assert tertiles([7.0]) == (7.0, 7.0)
    assert tertiles([None]) is None
    assert tertiles([]) is None


@pytest.mark.parametrize(
    ("mttr", "level"),
    [
        (0.0, "I1"),
        (10.0, "I1"),
        (10.000001, "I2"),
        (20.0, "I2"),
        (20.000001, "I3"),
        (1e9, "I3"),
    ],
)
def test_impact_ties_at_a_tertile_go_to_the_lower_level(mttr, level):
    assert impact_level(mttr, 10.0, 20.0) == level


def test_impact_equal_tertiles_split_in_two():
    assert impact_level(5.0, 5.0, 5.0) == "I1"
    assert impact_level(5.1, 5.0, 5.0) == "I3"


def test_impact_without_mttr_is_none():
    assert impact_level(None, 1.0, 2.0) is None
    assert impact_level(math.nan, 1.0, 2.0) is None


def test_impact_rejects_tertiles_out_of_order():
    with pytest.raises(RiskInputError, match="q33 <= q66"):
        impact_level(1.0, 3.0, 2.0)


@pytest.mark.parametrize(
    ("band", "row"),
    [
        ("P1", ("L1", "L2", "M1")),
        ("P2", ("L2", "M2", "H1")),
        ("P3", ("M1", "H1", "H2")),
        ("P4", ("H1", "H2", "H3")),
    ],
)
def test_grade_matrix(band, row):
    assert tuple(grade(band, level) for level in ("I1", "I2", "I3")) == row


def test_grade_without_impact_and_bad_values():
    assert grade("P4", None) is None
    with pytest.raises(RiskInputError, match="likelihood must be one of"):
        grade("P5", "I1")
    with pytest.raises(RiskInputError, match="impact must be one of"):
        grade("P1", "I4")


@pytest.mark.parametrize(
    ("g", "what"),
    [
        ("L1", "accept"),
        ("L2", "accept"),
        ("M1", "monitor"),
        ("M2", "monitor"),
        ("H1", "act"),
        ("H2", "block"),
        ("H3", "full review"),
        (None, None),
    ],
)
def test_actions(g, what):
    assert action(g) == what


def test_action_rejects_unknown_grade():
    with pytest.raises(RiskInputError, match="grade must be one of"):
        action("X1")


def test_severity_order():
    assert [severity(g) for g in (None, "L1", "M2", "H3")] == [0, 1, 4, 7]


def test_resolution_stats_mean_median_open_share():
    mean, median, open_share = resolution_stats([True, True, True, False], [1.0, 2.0, 9.0, None])
    assert (mean, median, open_share) == (4.0, 2.0, 0.25)


def test_resolution_stats_no_closed_issue():
    assert resolution_stats([False, False], [None, None]) == (None, None, 1.0)


@pytest.mark.parametrize(
    ("flags", "hours", "message"),
    [
        ([True], [None], "closed but has no resolution_hours"),
        ([True], [-1.0], "resolution_hours=-1.0 < 0"),
        ([], [], "at least one issue"),
        ([True, False], [1.0], "one resolution time per issue"),
    ],
)
def test_resolution_stats_rejects_bad_records(flags, hours, message):
    with pytest.raises(RiskInputError, match=message):
        resolution_stats(flags, hours)


def _issues(spec: dict[int, list[float | None]]) -> pd.DataFrame:
    """Synthetic issues: per cluster a list of resolution hours, None meaning still open."""
    rows = [
        {"cluster": c, "is_closed": h is not None, "resolution_hours": h} for c, hours in spec.items() for h in hours
    ]
    return pd.DataFrame(rows)


def test_assess_excludes_noise_and_excluded_clusters_before_counting_n():
    issues = _issues({-1: [1.0] * 50, 0: [10.0] * 10, 1: [20.0] * 5, 2: [30.0] * 5, 9: [1.0] * 80})
    by_cluster = {r.cluster: r for r in assess(issues, excluded=[9], measure="mean_closed")}
    assert set(by_cluster) == {0, 1, 2}
    assert by_cluster[0].p_k == pytest.approx(0.5)
    assert by_cluster[1].p_k == pytest.approx(0.25)
    assert [by_cluster[c].impact for c in (0, 1, 2)] == ["I1", "I2", "I3"]
    assert [by_cluster[c].grade for c in (0, 1, 2)] == ["H1", "H2", "H3"]
    assert by_cluster[2].action == "full review"


def test_assess_p_k_of_exactly_a_band_edge():
    issues = _issues({0: [1.0] * 1, 1: [2.0] * 4, 2: [3.0] * 15, 3: [4.0] * 80})
    by_cluster = {r.cluster: r for r in assess(issues, measure="mean_closed")}
    assert [by_cluster[c].p_k for c in range(4)] == [0.01, 0.04, 0.15, 0.80]
    assert [by_cluster[c].likelihood for c in range(4)] == ["P2", "P2", "P4", "P4"]


def test_assess_cluster_without_closed_issue_is_unrated_and_ignored_by_tertiles():
    issues = _issues({0: [None, None], 1: [5.0, 5.0], 2: [50.0, None]})
    by_cluster = {r.cluster: r for r in assess(issues, measure="mean_closed")}
    assert by_cluster[0].mttr_hours is None and by_cluster[0].impact is None and by_cluster[0].grade is None
    assert by_cluster[0].open_share == 1.0
    assert (by_cluster[1].impact, by_cluster[2].impact) == ("I1", "I3")
    assert by_cluster[2].median_ttr_hours == 50.0 and by_cluster[2].open_share == 0.5


def test_assess_fewer_than_three_clusters():
    single = assess(_issues({4: [3.0, 5.0]}), measure="mean_closed")
    assert [(r.cluster, r.p_k, r.likelihood, r.impact, r.grade) for r in single] == [(4, 1.0, "P4", "I1", "H1")]
    pair = {r.cluster: r.impact for r in assess(_issues({0: [1.0], 1: [2.0]}), measure="mean_closed")}
    assert pair == {0: "I1", 1: "I3"}


def test_assess_sorts_most_severe_first():
    issues = _issues({0: [1.0] * 10, 1: [100.0] * 10, 2: [50.0] * 10})
    assert [r.grade for r in assess(issues, measure="mean_closed")] == ["H3", "H2", "H1"]


def test_assess_empty_and_bad_input():
    assert assess(_issues({-1: [1.0]}), measure="mean_closed") == []
    with pytest.raises(RiskInputError, match="lacks columns"):
        assess(pd.DataFrame({"cluster": [0]}), measure="mean_closed")
    with pytest.raises(RiskInputError, match="cluster 3: .*< 0"):
        assess(_issues({3: [-2.0]}), measure="mean_closed")


def test_the_vectorised_grades_are_the_matrix_grades():
    """grades_of (the bootstrap's) must give what likelihood_band, tertiles, impact_level and grade give, cluster by
    cluster."""
    from issuerisk.grading.matrix import grade, grades_of, impact_level, likelihood_band, tertiles

    rng = np.random.default_rng(7)
    for _ in range(300):
        k = int(rng.integers(1, 40))
        shares = rng.dirichlet(np.ones(k) * rng.uniform(0.1, 3))
        shares[rng.random(k) < 0.1] = rng.choice([0.01, 0.05, 0.15])  # exactly on a band's edge
        impacts = rng.gamma(2.0, 100.0, k)
        impacts[rng.random(k) < 0.15] = np.nan
        impacts[rng.random(k) < 0.2] = impacts[0]  # ties with a tertile
        cuts = tertiles(impacts)
        expected = [
            grade(likelihood_band(float(min(p, 1.0))), None if cuts is None else impact_level(i, *cuts)) or ""
            for p, i in zip(shares, impacts)
        ]
        assert list(grades_of(np.minimum(shares, 1.0), impacts)) == expected
