"""A seeded sample of issues that every stage agrees on without coordination.

Each issue gets a stable rank from a hash of the seed and its key; a sample of
n is the n lowest ranks, so summarize, embed and cluster pick the same issues
in separate processes, and a larger n contains a smaller one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def rank(repository: str, number: int, seed: int) -> int:
    """Stable pseudo-random rank of one issue for a seed."""
    digest = hashlib.blake2b(f"{seed}:{repository}#{number}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def sample_keys(keys: Iterable[tuple[str, int]], n: int | None, seed: int) -> set[tuple[str, int]]:
    """The n issues of ``keys`` with the lowest rank (all of them when n is None)."""
    keys = list(keys)
    if n is None or n >= len(keys):
        return set(keys)
    return set(sorted(keys, key=lambda k: rank(k[0], int(k[1]), seed))[:n])
