"""Kaplan–Meier and its restricted mean against lifelines, on SYNTHETIC samples with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from issuerisk.grading.survival import SurvivalInputError, censored_durations, kaplan_meier, restricted_mean


def test_a_hand_computed_curve():
    # times 1, 2 (censored), 3, 3, 5 (censored): S(1) = 4/5, S(3) = 4/5 * (1 - 2/3) = 4/15
    times, survival = kaplan_meier([3, 1, 2, 3, 5], [True, True, False, True, False])
    assert times.tolist() == [1, 2, 3, 5]
    assert survival == pytest.approx([0.8, 0.8, 4 / 15, 4 / 15])
    # RMST to 4: 1 * 1 + 0.8 * 2 + 4/15 * 1
    assert restricted_mean([3, 1, 2, 3, 5], [True, True, False, True, False], 4) == pytest.approx(1 + 1.6 + 4 / 15)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_lifelines_on_censored_exponential_samples(seed):
    from lifelines import KaplanMeierFitter
    from lifelines.utils import restricted_mean_survival_time

    rng = np.random.default_rng(seed)
    n = 400
    resolve = rng.exponential(200.0, n).round(1)  # ties on purpose
    censor = rng.uniform(0, 600, n).round(1)
    durations, events = np.minimum(resolve, censor), resolve <= censor
    fitter = KaplanMeierFitter().fit(durations, events)
    times, survival = kaplan_meier(durations, events)
    expected = fitter.survival_function_.iloc[1:, 0]  # lifelines adds time 0
    np.testing.assert_allclose(times, expected.index.to_numpy())
    np.testing.assert_allclose(survival, expected.to_numpy(), rtol=1e-12)
    for horizon in (50.0, 365.0, 10_000.0):
        assert restricted_mean(durations, events, horizon) == pytest.approx(
            restricted_mean_survival_time(fitter, t=horizon), rel=1e-9
        )


def test_known_answer_without_censoring_is_the_capped_mean():
    hours = np.array([5.0, 10.0, 20.0, 400.0])
    assert restricted_mean(hours, np.ones(4, bool), 100.0) == pytest.approx(np.minimum(hours, 100.0).mean())


def test_open_issues_raise_the_estimate_the_closed_mean_misses():
    durations, events = censored_durations(
        [10.0, 12.0, np.nan, np.nan], [True, True, False, False], [0, 0, 900.0, 900.0]
    )
    assert durations.tolist() == [10.0, 12.0, 900.0, 900.0]
    assert restricted_mean(durations, events, 720.0) > 300 > np.mean([10.0, 12.0])


def test_bad_samples_are_named():
    with pytest.raises(SurvivalInputError, match="one event flag per duration"):
        kaplan_meier([1.0, 2.0], [True])
    with pytest.raises(SurvivalInputError, match="must be >= 0 hours, got \\[-3.0\\]"):
        kaplan_meier([1.0, -3.0], [True, True])
    with pytest.raises(SurvivalInputError, match="positive number of hours"):
        restricted_mean([1.0], [True], 0)
