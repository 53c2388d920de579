"""bench.validity's label maps on the real spellings of the corpus's labels, and its measures on known answers."""

from __future__ import annotations

import re

import pytest

from bench.validity import SEVERE_PATTERN, area_agreement, area_of
from issuerisk.grading.confidence import rank_correlation


@pytest.mark.parametrize(
    ("labels", "area"),
    [
        (["installation"], "installation and environment"),
        (["bug", "area/docker"], "installation and environment"),
        (["os/windows", "type:bug"], "installation and environment"),
        (["documentation"], "documentation and examples"),
        (["area/docs", "good first issue"], "documentation and examples"),
        (["module:datasets&loaders"], "data loading"),
        (["area/model-registry", "bug"], "model export and serving"),
        (["integrations/sagemaker"], "model export and serving"),
        (["gpu"], "gpu and parallelism"),
        (["Performance"], "performance"),
        (["area/uiux"], "user interface"),
        (["kind/ci/failing"], "tests and ci"),
        (["bug"], None),  # a kind, not an area
        (["enhancement", "question", "stale"], None),
        (["installation", "documentation"], None),  # two areas: no single answer
        (["documentation-bot"], None),  # whole label names only
    ],
)
def test_labels_that_name_an_area_map_to_it_on_their_real_spellings(labels, area):
    assert area_of(labels) == area


@pytest.mark.parametrize(
    ("label", "severe"),
    [
        ("P0", True),
        ("p1", True),
        ("priority/important-soon", True),
        ("High Priority", True),
        ("regression", True),
        ("major bug", True),
        ("p3", False),
        ("low priority", False),
        ("priority: low", False),
        ("bug", False),
    ],
)
def test_severity_labels_are_priorities_and_severities_not_kinds(label, severe):
    assert bool(re.match(SEVERE_PATTERN, label.lower())) is severe


def test_area_agreement_counts_noise_as_one_group_and_purity_by_majority():
    issues = {("r", i): {"area": a} for i, a in enumerate(["gpu", "gpu", "docs", "docs", "docs", None])}
    perfect = {("r", i): c for i, c in enumerate([0, 0, 1, 1, 1, 5])}
    nmi, purity, n = area_agreement(perfect, issues, set(issues))
    assert (round(nmi, 6), purity, n) == (1.0, 1.0, 5)
    noisy = {("r", i): c for i, c in enumerate([-1, -1, -1, -1, 1, 5])}  # noise is one group: 2 gpu + 2 docs
    nmi, purity, n = area_agreement(noisy, issues, set(issues))
    assert purity == pytest.approx(3 / 5) and 0 < nmi < 1


def test_rank_correlation_holds_the_estimate_and_is_seeded():
    rho, low, high = rank_correlation([1, 2, 3, 4, 5, 6, 7], [2, 1, 4, 3, 6, 5, 7])
    assert low <= rho <= high and rho == pytest.approx(1 - 6 * 6 / (7 * 48))  # sum of d^2 = 6
    assert rank_correlation([1, 2, 3, 4, 5, 6, 7], [2, 1, 4, 3, 6, 5, 7]) == (rho, low, high)
