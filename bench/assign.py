"""``issuerisk assign`` against a full re-clustering, on the issues of a later period (real issues).

Run ``.venv/bin/python -m bench.assign`` (``--subset small|large``, ``--late-share 0.15``). The subset's issues
(``bench.pipeline.subsets``) are split by creation time: the latest ``late-share`` of them are the "new" issues.

* A: ``issuerisk run`` on the earlier issues, then ``issuerisk ingest`` of the later ones and ``issuerisk assign``
  (timed: the assign command's wall time and stage seconds, filter, summarize and embed of the new issues included);
* B: ``issuerisk run`` on all of them: the full re-clustering that assign stands in for.

A's clusters are matched to B's through the earlier issues both clustered (each A cluster to the B cluster that holds
most of its issues; noise to noise). On the later issues it prints: the agreement of assign's placement (mapped to B)
with B's own label, the adjusted Rand index between them (noise as a label), and how often each side calls an
issue noise. As a ceiling it prints the same agreement on the earlier issues, where A and B differ only by
re-clustering with more data.
"""

from __future__ import annotations

import argparse
import gzip
import json
import tempfile
from collections import Counter
from pathlib import Path

from bench.pipeline import issuerisk, subsets, warehouse_tables


def split(files: list[Path], late_share: float, workdir: Path) -> tuple[Path, Path, int]:
    """The subset's issue objects as early.jsonl and late.jsonl (by created_at) and the cut's index."""
    issues = []
    for f in files:
        with gzip.open(f, "rt", encoding="utf-8") as fh:
            issues += [json.loads(line) for line in fh if '"pull_request"' not in line]
    issues.sort(key=lambda o: (o["created_at"], o["repository_url"], o["number"]))
    cut = int(len(issues) * (1 - late_share))
    early, late = workdir / "early.jsonl", workdir / "late.jsonl"
    early.write_text("".join(json.dumps(o) + "\n" for o in issues[:cut]))
    late.write_text("".join(json.dumps(o) + "\n" for o in issues[cut:]))
    return early, late, cut


def labels_of(warehouse: Path) -> dict[tuple[str, int], int]:
    tables = warehouse_tables(warehouse)
    run = next(r for r in tables.read("runs").to_pylist() if r["command"] == "run")
    rows = tables.read("gold_clusters", where={"run_id": run["run_id"]}).to_pylist()
    return {(r["repository"], r["number"]): r["cluster"] for r in rows}


def matching(a: dict, b: dict) -> dict[int, int]:
    """Each A cluster to the B cluster holding most of its issues that B clustered too (noise stays noise)."""
    votes: dict[int, Counter] = {}
    for key, label in a.items():
        if key in b and label >= 0:
            votes.setdefault(label, Counter())[b[key]] += 1
    return {-1: -1, **{label: count.most_common(1)[0][0] for label, count in votes.items()}}


def agreement(mapped: dict, b: dict) -> dict[str, float]:
    from sklearn.metrics import adjusted_rand_score

    keys = sorted(set(mapped) & set(b))
    x, y = [mapped[k] for k in keys], [b[k] for k in keys]
    both = [(p, q) for p, q in zip(x, y) if p >= 0 and q >= 0]
    return {
        "issues": len(keys),
        "same": sum(p == q for p, q in zip(x, y)) / max(len(keys), 1),
        "same_where_both_placed": sum(p == q for p, q in both) / max(len(both), 1),
        "ari": float(adjusted_rand_score(y, x)) if keys else float("nan"),
        "noise_a": sum(p < 0 for p in x) / max(len(keys), 1),
        "noise_b": sum(q < 0 for q in y) / max(len(keys), 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset", default="small", choices=["small", "large"])
    parser.add_argument("--late-share", type=float, default=0.15)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="issuerisk-bench-assign-") as tmp:
        work = Path(tmp)
        early, late, cut = split(subsets()[args.subset], args.late_share, work)
        a, b = work / "a", work / "b"
        issuerisk(a, "run", str(early))
        issuerisk(a, "ingest", str(late))
        assign_seconds = issuerisk(a, "assign")
        tables = warehouse_tables(a)
        run = max(
            (r for r in tables.read("runs").to_pylist() if r["command"] == "assign"), key=lambda r: r["started_at"]
        )
        metrics = json.loads(run["metrics_json"])
        placed = {(r["repository"], r["number"]): r["cluster"] for r in tables.read("gold_assignments").to_pylist()}
        reasons = Counter(
            (r["reason"] or "placed").split(" (")[0].split(":")[0] for r in tables.read("gold_assignments").to_pylist()
        )
        issuerisk(b, "run", str(early), str(late))
        first, full = labels_of(a), labels_of(b)
        to_b = matching(first, full)
        late_row = agreement({k: to_b.get(v, -1) for k, v in placed.items()}, full)
        early_row = agreement({k: to_b.get(v, -1) for k, v in first.items()}, full)
    new = len(placed)
    stage_seconds = {k: v["stage_seconds"] for k, v in metrics.items() if isinstance(v, dict) and "stage_seconds" in v}
    print(f"\nsubset {args.subset}: {cut:,} earlier issues, {new:,} later issues placed by assign\n")
    print(
        "| issues | compared | same cluster as re-clustering | same where both placed | ARI | noise (assign) "
        "| noise (re-clustering) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, row in (
        ("later (assign vs re-clustering)", late_row),
        ("earlier (run vs re-clustering: the ceiling)", early_row),
    ):
        print(
            f"| {name} | {row['issues']:,} | {row['same']:.3f} | {row['same_where_both_placed']:.3f} "
            f"| {row['ari']:.3f} | {row['noise_a']:.3f} | {row['noise_b']:.3f} |"
        )
    per_1000 = assign_seconds / max(new, 1) * 1000
    print(
        f"\nassign: {assign_seconds:.1f} s wall for {new:,} issues ({per_1000:.0f} s per 1,000 new issues, "
        f"process start and Spark/Ray start included); stages (s): {json.dumps(stage_seconds)}"
    )
    print(f"placement outcomes: {dict(reasons)}")


if __name__ == "__main__":
    main()
