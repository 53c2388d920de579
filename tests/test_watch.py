"""The excess test of ``issuerisk watch`` on planted counts (SYNTHETIC)."""

from __future__ import annotations

import pandas as pd

from issuerisk.analysis.watch import alerts, expected_shares


def test_expected_shares_come_from_the_recent_quarters_only():
    trends = pd.DataFrame(
        [
            # cluster 1 was big long ago and is small lately; cluster 2 the other way round
            ("all", 1, "2020Q1", 50, 100),
            ("all", 2, "2020Q1", 5, 100),
            ("all", 1, "2022Q3", 2, 40),
            ("all", 2, "2022Q3", 10, 40),
            ("all", 1, "2022Q4", 2, 60),
            ("all", 2, "2022Q4", 20, 60),
            ("pytorch", 1, "2022Q4", 99, 99),
        ],
        columns=["framework", "cluster", "period", "n", "total"],
    )
    assert expected_shares(trends, recent_periods=2) == {1: 0.04, 2: 0.3}


def test_a_pattern_alerts_only_on_a_significant_excess_of_enough_issues():
    placed = pd.DataFrame({"cluster": [1] * 6 + [2] * 3 + [-1] * 11})  # 20 new issues
    rows = {r["cluster"]: r for r in alerts(placed, {1: 0.05, 2: 0.15}, min_issues=3, alpha=0.05)}
    assert rows[1]["alert"] and rows[1]["expected"] == 1.0 and rows[1]["p_value"] < 0.001
    assert not rows[2]["alert"] and rows[2]["expected"] == 3.0, "three where three were expected"
    few = alerts(pd.DataFrame({"cluster": [1, 1, -1]}), {1: 0.01}, min_issues=3, alpha=0.05)
    assert not few[0]["alert"], "two issues never alert, however unlikely"
