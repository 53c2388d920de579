"""How sure each grade is: a seeded bootstrap of the whole risk matrix, as pure numpy.

One round draws the scope's issues again: the cluster sizes from a multinomial
with the observed shares (so ``P_k`` moves as a resampled corpus would move it)
and, within every cluster, its issues with replacement (so the impact measure
moves). The tertile thresholds are recomputed from the round's impacts, and the
round's grades read from the same matrix. Over ``rounds`` rounds this gives
percentile intervals for ``P_k`` and the impact measure and the share of rounds
that give each grade; ``grade_confidence`` is the share that agrees with the
reported grade.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from issuerisk.grading.matrix import grades_of, impact


@dataclass(frozen=True)
class ClusterSample:
    """One cluster's issues in a scope: hours until resolution (closed) or censoring (open), and which were closed."""

    cluster: int
    durations: np.ndarray
    events: np.ndarray


@dataclass(frozen=True)
class GradeConfidence:
    """A cluster's bootstrap intervals (2.5 and 97.5 percentiles) and the share of rounds per grade."""

    p_k_low: float
    p_k_high: float
    impact_low: float | None
    impact_high: float | None
    grade_shares: dict[str, float]
    grade_confidence: float | None


def bootstrap(
    samples: Sequence[ClusterSample],
    reported: dict[int, str | None],
    measure: str,
    horizon_hours: float,
    rounds: int,
    seed: int,
) -> dict[int, GradeConfidence]:
    """Bootstrap a scope's risk matrix ``rounds`` times (seeded) and summarize each cluster.

    Args:
        samples: every graded cluster of the scope (their issues make N).
        reported: the grade reported for each cluster (None when it has none).

    Raises:
        ValueError: fewer than 1 round.
    """
    if rounds < 1:
        raise ValueError(f"risk.bootstrap_rounds must be at least 1, got {rounds}")
    if not samples:
        return {}
    rng = np.random.default_rng(seed)
    sizes = np.array([len(s.durations) for s in samples])
    total = int(sizes.sum())
    shares = rng.multinomial(total, sizes / total, size=rounds) / total
    impacts = np.empty((rounds, len(samples)))
    for k, s in enumerate(samples):
        n = len(s.durations)
        draws = rng.integers(0, n, size=(rounds, n))
        impacts[:, k] = [impact(s.durations[d], s.events[d], measure, horizon_hours) for d in draws]
    grades = np.array([grades_of(shares[r], impacts[r]) for r in range(rounds)])
    out = {}
    for k, s in enumerate(samples):
        column = grades[:, k]
        values, counts = np.unique(column[column != ""], return_counts=True)
        shares_k = {str(v): round(float(c) / rounds, 4) for v, c in zip(values, counts)}
        finite = impacts[:, k][~np.isnan(impacts[:, k])]
        grade = reported.get(s.cluster)
        out[s.cluster] = GradeConfidence(
            p_k_low=float(np.percentile(shares[:, k], 2.5)),
            p_k_high=float(np.percentile(shares[:, k], 97.5)),
            impact_low=float(np.percentile(finite, 2.5)) if len(finite) else None,
            impact_high=float(np.percentile(finite, 97.5)) if len(finite) else None,
            grade_shares=shares_k,
            grade_confidence=None if grade is None else shares_k.get(grade, 0.0),
        )
    return out


def rank_correlation(
    x: Sequence[float], y: Sequence[float], rounds: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Spearman's rho of ``x`` and ``y`` and its 95 % percentile bootstrap interval (the pairs resampled, seeded).

    Used to check the grade order against severity signals the grade does not use (the risk stage's
    ``severity_check``, ``bench.validity``). Resamples without variation on either side are skipped.
    """
    from scipy.stats import spearmanr

    x_arr, y_arr = np.asarray(x, float), np.asarray(y, float)
    rho = float(spearmanr(x_arr, y_arr).statistic)
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(rounds):
        pick = rng.integers(0, len(x_arr), len(x_arr))
        if np.ptp(x_arr[pick]) > 0 and np.ptp(y_arr[pick]) > 0:
            draws.append(spearmanr(x_arr[pick], y_arr[pick]).statistic)
    low, high = np.percentile(draws, [2.5, 97.5]) if draws else (float("nan"), float("nan"))
    return rho, float(low), float(high)
