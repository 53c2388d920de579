"""Facts of the domain that every layer shares, stated once."""

from __future__ import annotations

FRAMEWORKS: tuple[str, ...] = ("pytorch", "tensorflow", "keras")
"""The frameworks the tool compares, in the order tables and reports list them."""

UNKNOWN_FRAMEWORK = "unknown"
"""The framework of a repository without evidence for any of :data:`FRAMEWORKS`."""

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
"""Names of this machine's loopback interface (as a host, and bracketed as in a URL)."""

NOISE = -1
"""HDBSCAN's label for an issue that belongs to no cluster."""

DISSOLVED_BELOW = 0.6
"""Bootstrap Jaccard stability under which a cluster has dissolved (Hennig 2007); ``risk.min_stability`` defaults to
it."""
STABLE_FROM = 0.75
"""Bootstrap Jaccard stability from which Hennig calls a cluster stable (what gold_quality counts)."""

GRADE_ORDER: tuple[str, ...] = ("L1", "L2", "M1", "M2", "H1", "H2", "H3")
"""Risk grades from the mildest to the most severe."""


def grade_order_sql(column: str = "grade") -> str:
    """Spark SQL that ranks ``column`` by :data:`GRADE_ORDER` (1 for L1 up to 7 for H3, 0 for null)."""
    return f"array_position(array({', '.join(repr(g) for g in GRADE_ORDER)}), {column})"
