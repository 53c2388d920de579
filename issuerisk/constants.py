"""Facts of the domain that every layer shares, stated once."""

from __future__ import annotations

FRAMEWORKS: tuple[str, ...] = ("pytorch", "tensorflow", "keras")
"""The frameworks the tool compares, in the order tables and reports list them."""

FRAMEWORK_WORDS = frozenset({*FRAMEWORKS, "torch", "tf"})
"""Words that name a framework: they say where a failure happens, not what fails."""

FAILURE_WORDS = frozenset(
    "error errors fail fails failed failing failure exception exceptions traceback line issue problem bug".split()
)
"""Words that say that something failed, not what: a cluster of defects holds them more often than the run's feature
requests and questions do, so their lift alone makes them look specific. A cluster set apart mostly by these and
:data:`FRAMEWORK_WORDS` holds one framework's failures of many kinds (both count as generic in its breadth)."""

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
