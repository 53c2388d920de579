"""A seeded sample of issues that every stage agrees on without coordination.

Each issue gets a stable rank from a hash of the seed and its key; a sample of
n is the n lowest ranks, so summarize, embed and cluster pick the same issues
in separate processes, and a larger n contains a smaller one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

import pyarrow as pa

from issuerisk.conf import Config
from issuerisk.lakehouse import ArrowTables
from issuerisk.schemas.silver import SILVER_ISSUES


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


def sampled_keys(tables: ArrowTables, cfg: Config) -> set[tuple[str, int]] | None:
    """The seeded sample of silver issue keys when ``project.sample_size`` is set, else None (every issue)."""
    if cfg.project.sample_size is None:
        return None
    keys = tables.read(SILVER_ISSUES, columns=["repository", "number"])
    return sample_keys(
        zip(keys.column("repository").to_pylist(), keys.column("number").to_pylist()),
        cfg.project.sample_size,
        cfg.project.seed,
    )


def restrict(batches: Iterable[pa.RecordBatch], keys: set[tuple[str, int]] | None) -> Iterator[pa.RecordBatch]:
    """Keep only rows whose (repository, number) is in ``keys``; None keeps all."""
    for batch in batches:
        if keys is not None:
            mask = [
                (r, n) in keys
                for r, n in zip(batch.column("repository").to_pylist(), batch.column("number").to_pylist())
            ]
            batch = batch.filter(pa.array(mask, pa.bool_()))
        yield batch
