"""Which issue authors are bots: the one rule the filter (in Spark) and the kinds reference corpus (in Python) apply."""

from __future__ import annotations


def bot_login_pattern(patterns: list[str]) -> str:
    """``filter.bot_login_patterns`` as one regular expression, each pattern case-insensitive (``(?i:…)``), in the
    syntax both Spark's ``rlike`` (Java) and Python's ``re`` read."""
    return "|".join(f"(?i:{p})" for p in patterns)
