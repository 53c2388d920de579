"""The reference risk matrix as pure functions: likelihood bands, impact tertiles, grades and actions.

Likelihood is a cluster's share of the clustered issues in scope,
``P_k = n_k / N`` (noise and clusters excluded as "not an ML problem" are
removed before N is counted), banded P1 [0, 0.01), P2 [0.01, 0.05),
P3 [0.05, 0.15), P4 [0.15, 1]. Impact compares a cluster's impact measure
with the tertiles q33 and q66 of all the scope's cluster values:
I1 <= q33 < I2 <= q66 < I3. The measure is either the Kaplan–Meier restricted
mean time to resolve (``rmst``: open issues censored at the snapshot, so a
cluster whose hard issues are still open does not look quick) or the
reference study's mean over closed issues (``mean_closed``, MTTR); both are
reported. The grade is read from a fixed 4 x 3 matrix and each grade has one
action. A cluster without an impact value (no closed issue for MTTR) gets no
impact, grade or action: it is reported as unrated rather than guessed.
Nothing here does IO; the risk stage feeds it pandas.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from issuerisk.constants import GRADE_ORDER, NOISE
from issuerisk.grading.survival import censored_durations, restricted_mean

LIKELIHOOD_BANDS: tuple[tuple[str, float], ...] = (("P1", 0.01), ("P2", 0.05), ("P3", 0.15), ("P4", math.inf))
IMPACTS = ("I1", "I2", "I3")
GRADES: dict[str, tuple[str, str, str]] = {
    "P1": ("L1", "L2", "M1"),
    "P2": ("L2", "M2", "H1"),
    "P3": ("M1", "H1", "H2"),
    "P4": ("H1", "H2", "H3"),
}
ACTIONS: dict[str, str] = {
    "L1": "accept",
    "L2": "accept",
    "M1": "monitor",
    "M2": "monitor",
    "H1": "act",
    "H2": "block",
    "H3": "full review",
}


class RiskInputError(ValueError):
    """The issues handed to the risk matrix are not usable as they are."""


@dataclass(frozen=True)
class ClusterRisk:
    """One cluster's row of the risk matrix within one scope."""

    cluster: int
    n: int
    p_k: float
    likelihood: str
    mttr_hours: float | None
    median_ttr_hours: float | None
    open_share: float
    impact: str | None
    grade: str | None
    action: str | None
    rmst_hours: float | None = None
    impact_hours: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def likelihood_band(p_k: float) -> str:
    """Band of a share: P1 [0, 0.01), P2 [0.01, 0.05), P3 [0.05, 0.15), P4 [0.15, 1].

    Raises:
        RiskInputError: ``p_k`` is not a number in [0, 1].
    """
    if p_k is None or not isinstance(p_k, (int, float)) or math.isnan(p_k) or not 0.0 <= p_k <= 1.0:
        raise RiskInputError(
            f"P_k must be a share in [0, 1], got {p_k!r}; it is n_k / N over the clustered issues in scope"
        )
    for band, upper in LIKELIHOOD_BANDS:
        if p_k < upper:
            return band
    raise AssertionError("unreachable: the last band is open-ended")


def tertiles(mttrs: Iterable[float | None]) -> tuple[float, float] | None:
    """q33 and q66 of the clusters' MTTRs (linear interpolation), ignoring clusters without one.

    With one rated cluster both tertiles equal its MTTR (it is I1); with two,
    the shorter is I1 and the longer I3. None when no cluster has an MTTR.
    """
    values = np.array([v for v in mttrs if v is not None and not math.isnan(v)], dtype=float)
    if values.size == 0:
        return None
    q33, q66 = np.quantile(values, [1 / 3, 2 / 3])
    return float(q33), float(q66)


def impact_level(mttr_hours: float | None, q33: float, q66: float) -> str | None:
    """I1 when MTTR <= q33, I2 when <= q66, else I3; None without an MTTR.

    Raises:
        RiskInputError: the tertiles are out of order.
    """
    if q33 > q66:
        raise RiskInputError(f"tertiles must satisfy q33 <= q66, got q33={q33} q66={q66}")
    if mttr_hours is None or math.isnan(mttr_hours):
        return None
    if mttr_hours <= q33:
        return "I1"
    if mttr_hours <= q66:
        return "I2"
    return "I3"


def grade(likelihood: str, impact: str | None) -> str | None:
    """The matrix cell for a likelihood band and an impact level (None without impact).

    Raises:
        RiskInputError: an unknown band or level.
    """
    if likelihood not in GRADES:
        raise RiskInputError(f"likelihood must be one of {sorted(GRADES)}, got {likelihood!r}")
    if impact is None:
        return None
    if impact not in IMPACTS:
        raise RiskInputError(f"impact must be one of {list(IMPACTS)}, got {impact!r}")
    return GRADES[likelihood][IMPACTS.index(impact)]


def action(grade_: str | None) -> str | None:
    """What to do about a grade: L accept, M monitor, H1 act, H2 block, H3 full review."""
    if grade_ is None:
        return None
    if grade_ not in ACTIONS:
        raise RiskInputError(f"grade must be one of {list(GRADE_ORDER)}, got {grade_!r}")
    return ACTIONS[grade_]


def resolution_stats(
    is_closed: Sequence[bool], hours: Sequence[float | None]
) -> tuple[float | None, float | None, float]:
    """Mean and median time to resolve of the closed issues, and the share still open.

    Raises:
        RiskInputError: no issues, a closed issue without a resolution time, or a negative one.
    """
    if len(is_closed) != len(hours) or not len(is_closed):
        raise RiskInputError(
            f"need one resolution time per issue and at least one issue, got {len(is_closed)} flags and {len(hours)} "
            "times"
        )
    closed = []
    for i, (flag, h) in enumerate(zip(is_closed, hours)):
        if not flag:
            continue
        if h is None or math.isnan(h):
            raise RiskInputError(
                f"issue {i} is closed but has no resolution_hours; silver_issues must set it for closed issues"
            )
        if h < 0:
            raise RiskInputError(
                f"issue {i} has resolution_hours={h} < 0; closed_at precedes created_at, fix the source record"
            )
        closed.append(float(h))
    open_share = 1.0 - len(closed) / len(is_closed)
    if not closed:
        return None, None, open_share
    return float(np.mean(closed)), float(np.median(closed)), open_share


def assess(
    issues: pd.DataFrame, excluded: Iterable[int] = (), measure: str = "rmst", horizon_hours: float = 8760.0
) -> list[ClusterRisk]:
    """The risk matrix of one scope.

    Args:
        issues: one row per clustered issue in scope with columns ``cluster``, ``is_closed``,
            ``resolution_hours`` and (for ``rmst``) ``open_hours``, the hours an open issue has been
            open at the snapshot; noise rows (cluster -1) are allowed and dropped.
        excluded: cluster ids that are not graded; dropped before N is counted.
        measure: ``rmst`` or ``mean_closed``: which feeds the impact tertiles.
        horizon_hours: the restricted mean's horizon.

    Returns:
        One :class:`ClusterRisk` per remaining cluster, most severe first (then largest).

    Raises:
        RiskInputError: a column is missing or a cluster's resolution times are invalid.
    """
    need = {"cluster", "is_closed", "resolution_hours"} | ({"open_hours"} if measure == "rmst" else set())
    missing = need - set(issues.columns)
    if missing:
        raise RiskInputError(f"the issues frame lacks columns {sorted(missing)}")
    kept = issues[(issues["cluster"] != NOISE) & ~issues["cluster"].isin(list(excluded))]
    total = len(kept)
    if total == 0:
        return []
    stats = {}
    for cluster, group in kept.groupby("cluster", sort=True):
        hours = [None if pd.isna(h) else float(h) for h in group["resolution_hours"]]
        closed = group["is_closed"].astype(bool).to_numpy()
        try:
            mean, median, open_share = resolution_stats(closed.tolist(), hours)
            rmst = None
            if "open_hours" in group:
                durations, events = censored_durations(
                    group["resolution_hours"].to_numpy(float), closed, group["open_hours"].to_numpy(float)
                )
                rmst = impact(durations, events, "rmst", horizon_hours)
        except (RiskInputError, ValueError) as exc:
            raise RiskInputError(f"cluster {cluster}: {exc}") from None
        stats[int(cluster)] = (len(group), mean, median, open_share, rmst, rmst if measure == "rmst" else mean)
    cuts = tertiles(value for *_, value in stats.values())
    rows = []
    for cluster, (n, mean, median, open_share, rmst, value) in stats.items():
        p_k = n / total
        band = likelihood_band(p_k)
        level = None if cuts is None else impact_level(value, *cuts)
        cell = grade(band, level)
        rows.append(
            ClusterRisk(cluster, n, p_k, band, mean, median, open_share, level, cell, action(cell), rmst, value)
        )
    return sorted(rows, key=lambda r: (-severity(r.grade), -r.n, r.cluster))


IMPACT_MEASURES = ("rmst", "mean_closed")
LIKELIHOOD_EDGES = np.array([upper for _, upper in LIKELIHOOD_BANDS[:-1]])
GRID = np.array([GRADES[band] for band, _ in LIKELIHOOD_BANDS])


def impact(durations: np.ndarray, events: np.ndarray, measure: str, horizon_hours: float) -> float:
    """The impact measure of one group: ``rmst`` (Kaplan–Meier restricted mean, open issues censored) or
    ``mean_closed`` (the reference study's mean over closed issues); NaN when it has none.

    Raises:
        ValueError: an unknown measure.
    """
    if measure == "rmst":
        return restricted_mean(durations, events, horizon_hours) if len(durations) else float("nan")
    if measure == "mean_closed":
        closed = durations[events]
        return float(closed.mean()) if len(closed) else float("nan")
    raise ValueError(f"risk.impact_measure={measure!r} is unknown; use one of {IMPACT_MEASURES}")


def grades_of(shares: np.ndarray, impacts: np.ndarray) -> np.ndarray:
    """:func:`grade` of :func:`likelihood_band` and :func:`impact_level` over :func:`tertiles`, for many clusters at
    once (the bootstrap's thousands of matrices): the same rule as :func:`assess`, '' where a cluster has no impact."""
    known = ~np.isnan(impacts)
    out = np.full(len(shares), "", dtype=object)
    if not known.any():
        return out
    q33, q66 = np.quantile(impacts[known], [1 / 3, 2 / 3])
    band = np.searchsorted(LIKELIHOOD_EDGES, shares, side="right")
    level = np.where(impacts <= q33, 0, np.where(impacts <= q66, 1, 2))
    out[known] = GRID[band[known], level[known]]
    return out


def severity(grade_: str | None) -> int:
    """Rank of a grade for sorting: 0 for unrated, 1 for L1 up to 7 for H3."""
    return 0 if grade_ is None else GRADE_ORDER.index(grade_) + 1
