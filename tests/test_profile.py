"""The data profile: each check warns exactly at its threshold; drift finds a planted shift and not a resample.

Issues here are SYNTHETIC rows built in the test (counts chosen to land on the thresholds).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from issuerisk.analysis.profile import drift_checks, gini, profile_checks, run_profile
from issuerisk.conf.settings import ProfileConfig
from issuerisk.schemas.silver import SILVER_EXCLUDED, SILVER_ISSUES
from tests.conftest import make_ctx

T0 = datetime(2020, 1, 1, tzinfo=timezone.utc)


def frame(
    repos: dict[str, int], framework: str = "pytorch", body: str = "x" * 100, labels=("bug",), closed: bool = True
) -> pd.DataFrame:
    rows = []
    for repo, count in repos.items():
        rows += [
            {
                "repository": repo,
                "number": i,
                "framework": framework,
                "title": "t",
                "body": body,
                "labels": list(labels),
                "is_closed": closed,
                "created_at": T0 + timedelta(days=i),
            }
            for i in range(count)
        ]
    return pd.DataFrame(rows)


def by_check(checks, scope="all"):
    return {c.check: c for c in checks if c.scope == scope}


def test_top_repository_share_warns_at_the_threshold_and_not_below():
    cfg = ProfileConfig(max_top_repository_share=0.10)
    at = by_check(profile_checks(frame({"big/one": 10, **{f"o/r{i}": 9 for i in range(10)}}), {}, cfg))  # 10 of 100
    assert at["top_repository_share"].value == 0.10 and at["top_repository_share"].warning
    assert "big/one holds 10.0 %" in at["top_repository_share"].message
    below = by_check(
        profile_checks(frame({"big/one": 9, **{f"o/r{i}": 9 for i in range(10)}, "o/x": 1}), {}, cfg)
    )  # 9 of 100
    assert below["top_repository_share"].value == 0.09 and not below["top_repository_share"].warning


@pytest.mark.parametrize(
    "check, key, at, below",
    [
        ("empty_body_share", "max_empty_body_share", {"empty": 5}, {"empty": 4}),
        ("short_body_share", "max_short_body_share", {"short": 20}, {"short": 19}),
        ("label_coverage", "min_label_coverage", {"labelled": 29}, {"labelled": 30}),
        ("open_share", "max_open_share", {"open": 50}, {"open": 49}),
    ],
)
def test_text_checks_fire_exactly_at_their_thresholds(check, key, at, below):
    cfg = ProfileConfig()

    def issues(empty=0, short=0, labelled=100, open=0):
        f = frame({f"o/r{i}": 10 for i in range(10)})
        f.loc[: empty - 1, "body"] = "" if empty else f["body"]
        f.loc[empty : empty + short - 1, "body"] = "short" if short else f["body"]
        f["labels"] = [["bug"] if i < labelled else [] for i in range(100)]
        f["is_closed"] = [i >= open for i in range(100)]
        return f

    fired = by_check(profile_checks(issues(**at), {}, cfg))[check]
    quiet = by_check(profile_checks(issues(**below), {}, cfg))[check]
    direction_ok = fired.value < getattr(cfg, key) if key.startswith("min") else fired.value == getattr(cfg, key)
    assert direction_ok and fired.warning, fired
    assert not quiet.warning, quiet


def test_framework_share_and_exclusions():
    cfg = ProfileConfig(min_framework_share=0.10, max_excluded_share=0.5)
    issues = pd.concat(
        [frame({f"o/r{i}": 10 for i in range(9)}), frame({"k/one": 9}, framework="keras")], ignore_index=True
    )
    checks = profile_checks(issues, {"pull_request": 99}, cfg)  # keras 9 of 99; 99 excluded of 198
    share = next(c for c in checks if c.check == "framework_share" and c.scope == "keras")
    assert share.warning and "keras holds 9.1 %" in share.message
    excluded = by_check(checks)["excluded_share"]
    assert excluded.value == 0.5 and excluded.warning and "pull_request 99" in excluded.message
    assert {c.scope for c in checks} == {"all", "pytorch", "keras"}
    sampled = by_check(profile_checks(issues, {"pull_request": 99}, cfg, silver_total=9_901))[
        "excluded_share"
    ]  # 99 issues a sample of 9,901
    assert (
        sampled.value == pytest.approx(0.0099)
        and not sampled.warning
        and "of the 10,000 ingested issues" in sampled.message
    )


def test_gini_and_quarters():
    assert gini([5, 5, 5]) == 0
    assert gini([0, 0, 0, 12]) == pytest.approx(0.75)
    quarters = by_check(profile_checks(frame({"o/r": 200}), {}, ProfileConfig()))["issues_per_quarter"]
    assert quarters.detail == {"2020Q1": 91, "2020Q2": 91, "2020Q3": 18} and not quarters.warning


def test_drift_finds_a_planted_shift_and_not_a_resample():
    rng = np.random.default_rng(0)
    n = 400
    created = pd.Series([T0 + timedelta(days=i) for i in range(n)])
    same = rng.normal(size=(n, 32))
    cfg = ProfileConfig(max_mmd=0.02, drift_permutations=50, drift_sample=100)
    quiet = {c.check: c for c in drift_checks(created, same, "all", cfg, seed=0)}
    assert not quiet["embedding_mmd"].warning and quiet["embedding_mmd"].detail["p_value"] > 0.05
    shifted = same.copy()
    shifted[-100:] += 1.5 * np.eye(32)[0]  # the latest quarter of the issues moves along one axis
    fired = {c.check: c for c in drift_checks(created, shifted, "all", cfg, seed=0)}
    assert fired["embedding_mmd"].warning and fired["embedding_mmd"].detail["p_value"] < 0.05
    assert "differ: MMD²" in fired["embedding_mmd"].message and "up to 2020-" in fired["embedding_mmd"].message
    assert fired["centroid_shift"].value > quiet["centroid_shift"].value
    assert drift_checks(created[:100], same[:100], "all", ProfileConfig(min_period_issues=30), seed=0) == []


def test_profile_stage_writes_gold_profile_on_delta(cfg):
    ctx = make_ctx(cfg)
    issues = frame({"big/one": 30, **{f"o/r{i}": 7 for i in range(10)}})
    rows = [
        {
            **r,
            "state": "closed",
            "html_url": None,
            "user_login": "u",
            "updated_at": None,
            "closed_at": None,
            "resolution_hours": 1.0,
            "frameworks": [r["framework"]],
            "framework_source": "given",
            "language": "en",
            "language_confidence": 1.0,
            "run_id": "seed",
        }
        for r in issues.to_dict("records")
    ]
    ctx.lake.arrow.merge(SILVER_ISSUES, pa.Table.from_pylist(rows, schema=SILVER_ISSUES.arrow))
    ctx.lake.arrow.merge(
        SILVER_EXCLUDED,
        pa.Table.from_pylist(
            [{"repository": "b/ot", "number": 1, "reason": "bot_author", "detail": "x", "run_id": "seed"}],
            schema=SILVER_EXCLUDED.arrow,
        ),
    )
    counts = run_profile(ctx)
    stored = ctx.lake.arrow.read("gold_profile", where={"run_id": ctx.run.run_id}).to_pylist()
    assert counts["checks"] == len(stored) > 10
    top = next(r for r in stored if r["check"] == "top_repository_share" and r["scope"] == "all")
    assert top["warning"] and top["value"] == 0.3 and "big/one" in top["message"]
    assert "top_repository_share:all" in counts["warned"]
    assert run_profile(ctx)["checks"] == counts["checks"]  # a rerun MERGEs the same rows
    assert ctx.lake.arrow.read("gold_profile").num_rows == len(stored)
