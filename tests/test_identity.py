"""Pattern identity across runs on planted clusters (SYNTHETIC issue keys and centroids)."""

from __future__ import annotations

import numpy as np

from issuerisk.analysis.identity import changes, match, pattern_ids


def planted(seed=0, k=6, size=40):
    rng = np.random.default_rng(seed)
    members = {c: {("o/r", c * 1000 + i) for i in range(size)} for c in range(k)}
    centroids = {c: rng.normal(size=32) for c in range(k)}
    return members, centroids


def test_the_matching_recovers_a_permutation_of_planted_clusters():
    members, centroids = planted()
    permutation = {0: 4, 1: 0, 2: 5, 3: 1, 4: 3, 5: 2}
    rng = np.random.default_rng(1)
    renamed = {permutation[c]: {k for k in m if rng.random() > 0.1} for c, m in members.items()}  # 10 % of issues gone
    moved = {permutation[c]: v + rng.normal(scale=0.1, size=32) for c, v in centroids.items()}
    matched = match(members, centroids, renamed, moved, min_score=0.5)
    assert {new: old for new, (old, _) in matched.items()} == {v: k for k, v in permutation.items()}
    ids = pattern_ids(matched, {c: f"P{c}" for c in members}, sorted(renamed), "run2")
    assert all(ids[permutation[c]] == f"P{c}" for c in members)


def test_a_new_pattern_gets_a_new_id_and_nothing_below_the_threshold_is_matched():
    members, centroids = planted()
    current = {0: members[0], 7: {("o/new", i) for i in range(30)}}
    rng = np.random.default_rng(5)
    matched = match(members, centroids, current, {0: centroids[0], 7: rng.normal(size=32)}, min_score=0.5)
    assert matched.keys() == {0}
    assert pattern_ids(matched, {0: "P0"}, [0, 7], "run9") == {0: "P0", 7: "run9:7"}


def test_changes_name_new_gone_split_and_merged_patterns():
    a = {0: set(range(0, 100)), 1: set(range(100, 150)), 2: set(range(150, 200)), 3: set(range(200, 240))}
    b = {10: set(range(0, 50)), 11: set(range(50, 100)), 12: set(range(100, 200)), 13: set(range(300, 340))}
    got = changes(a, b)
    assert got.split == {0: [10, 11]} and got.merged == {12: [1, 2]}
    assert got.gone == [3] and got.new == [13]
