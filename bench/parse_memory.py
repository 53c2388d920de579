"""Benchmark: the memory one ingest task holds to parse a file, JSON Lines against the same issues as one JSON array.

    .venv/bin/python -m bench.parse_memory [--file mlflow__mlflow.jsonl.gz]

Takes one REAL file of the shared corpus (default: its largest), writes its issues again as a gzip JSON array,
and parses both the way an ingest task does (:func:`issuerisk.issue_files.iter_rows` into Arrow batches), printing
rows, seconds and the Python heap's peak (tracemalloc) against the file's uncompressed JSON.
"""

from __future__ import annotations

import argparse
import gzip
import json
import tempfile
import time
import tracemalloc
from pathlib import Path

from issuerisk.issue_files import iter_rows, to_batches

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "lai2024-ml-issues" / "issues"


def measure(path: Path) -> tuple[int, float, int, int]:
    """Rows, seconds, peak heap bytes while parsing ``path``, and its uncompressed size."""
    tracemalloc.start()
    t0 = time.perf_counter()
    rows = sum(batch.num_rows for batch in to_batches(iter_rows(str(path))))
    took = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return rows, took, peak, len(gzip.decompress(path.read_bytes()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", default=max(CORPUS.glob("*.jsonl.gz"), key=lambda p: p.stat().st_size).name)
    args = parser.parse_args()
    lines = CORPUS / args.file
    with tempfile.TemporaryDirectory() as tmp:
        array = Path(tmp) / lines.name.replace(".jsonl.gz", ".json.gz")
        with gzip.open(lines, "rt", encoding="utf-8") as src, gzip.open(array, "wt", encoding="utf-8") as out:
            json.dump([json.loads(line) for line in src], out)
        print(f"{'file':<34} {'rows':>6} {'seconds':>8} {'JSON MB':>8} {'peak MB':>8} {'peak/JSON':>9}")
        for path in (lines, array):
            rows, took, peak, size = measure(path)
            print(f"{path.name:<34} {rows:>6} {took:>8.2f} {size / 1e6:>8.1f} {peak / 1e6:>8.0f} {peak / size:>9.1f}")


if __name__ == "__main__":
    main()
