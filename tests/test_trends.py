"""Risk over time on SYNTHETIC issue dates with known trends: Mann-Kendall on the share, and the status rules."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from issuerisk.analysis.trends import mann_kendall, series_rows
from issuerisk.conf.settings import TrendsConfig


def _issues(plan: dict[int, list[int]], start: str = "2019-01-15") -> pd.DataFrame:
    """``plan``: per cluster, its issues per quarter from ``start`` on (cluster -1 is noise)."""
    rows = []
    for cluster, per_quarter in plan.items():
        for q, count in enumerate(per_quarter):
            when = pd.Timestamp(start, tz="UTC") + pd.DateOffset(months=3 * q)
            rows += [{"cluster": cluster, "created_at": when}] * count
    return pd.DataFrame(rows)


def test_mann_kendall_sees_a_monotone_series_and_not_a_flat_one():
    tau, p = mann_kendall(np.arange(10, dtype=float))
    assert tau == pytest.approx(1.0) and p < 0.001
    assert mann_kendall(np.ones(8)) == (0.0, 1.0)
    tau, p = mann_kendall(np.array([3, 1, 4, 1, 5, 9, 2, 6, 5, 3], dtype=float))
    assert p > 0.05


def test_each_series_gets_its_status_by_the_rules():
    background = [20] * 12  # noise keeps every quarter's total up
    plan = {
        -1: background,
        0: [4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9],  # share rising steadily, most of it before the last year
        1: [12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1],  # share falling
        2: [5] * 12,  # flat
        3: [0] * 8 + [10, 10, 10, 10],  # new: all of it in the last four quarters
        4: [10, 10, 5, 5] + [0] * 8,  # gone: nothing recent
        5: [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],  # two issues: not tested
    }
    rows = series_rows(_issues(plan), "all", TrendsConfig())
    status = {r["cluster"]: r["status"] for r in rows}
    assert status == {0: "growing", 1: "fading", 2: "steady", 3: "emerging", 4: "fading", 5: "too few"}
    first = [r for r in rows if r["cluster"] == 0]
    assert [r["period"] for r in first][:2] == ["2019Q1", "2019Q2"] and len(first) == 12
    assert first[0]["n"] == 4 and first[0]["total"] == 20 + sum(v[0] for v in plan.values() if v is not background)
    assert first[0]["tau"] > 0.8 and first[0]["p_value"] < 0.05
    assert {r["tau"] for r in rows if r["cluster"] == 5} == {None}
    recent = next(r for r in rows if r["cluster"] == 3)
    assert recent["recent_share"] == 1.0
