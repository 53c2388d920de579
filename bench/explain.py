"""Benchmark the cost of explaining one issue's place in its cluster (occlusion + integrated gradients, MiniLM, CPU).

Run ``.venv/bin/python -m bench.explain`` (flags: ``--issues``, ``--pool``, ``--clusters``, ``--steps``).
It reads a seeded pool of real issues (title + "\\n" + body, cut to ``--chars`` characters; pull requests
skipped) from ../shared/data/lai2024-ml-issues, embeds the pool, clusters it with k-means and explains the
first ``--issues`` texts of the pool against the normalized mean of their own k-means cluster (the text
itself included, as a pipeline centroid would include its member). It prints seconds per issue (total,
occlusion part, gradient part), sentences per issue, the Spearman agreement of the two sentence scores, the
share of issues whose top sentence both methods name, and the completeness gap of the integrated gradients.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
REAL_ISSUES = REPO.parent / "shared" / "data" / "lai2024-ml-issues" / "issues"


def real_issue_texts(n: int, chars: int, per_file: int = 3, seed: int = 0) -> list[str]:
    """``n`` real issue texts, at most ``per_file`` drawn (seeded) from each file of a seeded file order."""
    rng = np.random.default_rng(seed)
    files = sorted(REAL_ISSUES.glob("*.jsonl.gz"))
    texts: list[str] = []
    for i in rng.permutation(len(files)):
        with gzip.open(files[i], "rt") as fh:
            issues = [json.loads(line) for line in fh]
        candidates = [
            f"{x.get('title') or ''}\n{x.get('body') or ''}".strip()[:chars] for x in issues if "pull_request" not in x
        ]
        candidates = [t for t in candidates if t]
        for j in rng.permutation(len(candidates))[:per_file]:
            texts.append(candidates[j])
            if len(texts) == n:
                return texts
    return texts


def cluster_centroids(vectors: np.ndarray, clusters: int, seed: int = 0) -> np.ndarray:
    """Per row, the normalized mean of the rows of its k-means cluster."""
    from sklearn.cluster import KMeans

    labels = KMeans(n_clusters=clusters, n_init=10, random_state=seed).fit_predict(vectors)
    means = np.stack([vectors[labels == c].mean(0) for c in range(clusters)])
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    return means[labels]


def print_table(title: str, header: list[str], rows: list[list[object]]) -> None:
    """A plain-text table: first column left-aligned, the others right-aligned."""
    cells = [header] + [[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    print(f"\n{title}")
    for k, row in enumerate(cells):
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if k == 0:
            print("  ".join("-" * w for w in widths))


def main(argv: list[str] | None = None) -> None:
    import torch
    from sentence_transformers import SentenceTransformer

    from issuerisk.encoding.models import packaged_minilm_path
    from issuerisk.ray_tasks.attributions import explain

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--issues", type=int, default=30, help="issues explained")
    p.add_argument("--pool", type=int, default=300, help="real issues clustered to get the centroids")
    p.add_argument("--clusters", type=int, default=8, help="k of the k-means over the pool")
    p.add_argument("--chars", type=int, default=2000, help="characters kept per issue text")
    p.add_argument("--steps", type=int, default=20, help="integrated-gradients interpolation points")
    p.add_argument("--top-tokens", type=int, default=8, help="words scored by occlusion")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    torch.set_num_threads(2)
    load_before = os.getloadavg()[0]
    model = SentenceTransformer(packaged_minilm_path(), device="cpu")
    texts = real_issue_texts(max(args.pool, args.issues), args.chars, seed=args.seed)
    t0 = time.perf_counter()
    vectors = model.encode(texts, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    embed_s = time.perf_counter() - t0
    centroids = cluster_centroids(vectors, args.clusters, seed=args.seed)
    explain(model, texts[0][:200], centroids[0], steps=args.steps, top_tokens=args.top_tokens)  # warm-up

    results = [
        explain(model, text, centroid, steps=args.steps, top_tokens=args.top_tokens)
        for text, centroid in zip(texts[: args.issues], centroids)
    ]

    def stats(values: list[float]) -> list[object]:
        return [float(np.mean(values)), float(np.median(values)), float(np.percentile(values, 95))]

    print(
        f"MiniLM-L6 on CPU, 2 threads; {len(texts)} pooled issues embedded in {embed_s:.1f} s, k-means "
        f"k={args.clusters}; "
        f"{len(results)} explained, steps={args.steps}, top_tokens={args.top_tokens}; "
        f"1-min load average {load_before:.2f} at start, {os.getloadavg()[0]:.2f} at end (other work slows the timings)"
    )
    print_table(
        "seconds per explained issue",
        ["part", "mean", "median", "p95"],
        [
            ["total", *stats([r.seconds for r in results])],
            ["perturbation (occlusion)", *stats([r.perturbation_seconds for r in results])],
            ["gradient (tokenize + IG)", *stats([r.gradient_seconds for r in results])],
        ],
    )
    seen = [[s for s in r.sentences if not s.truncated or (r.tokens and s.start < r.tokens[-1].end)] for r in results]
    ranked = [(r, s) for r, s in zip(results, seen) if len(s) >= 2]
    top_agree = [
        max(s, key=lambda x: x.perturbation).position == max(s, key=lambda x: x.gradient).position for _, s in ranked
    ]
    agreements = [r.agreement for r in results if r.agreement is not None]
    relative_gaps = [r.completeness_gap / abs(r.similarity - r.baseline_similarity) for r in results]
    print_table(
        "explanations",
        ["measure", "value"],
        [
            ["sentences per issue (mean)", float(np.mean([len(r.sentences) for r in results]))],
            ["words per issue seen by the model (mean)", float(np.mean([len(r.tokens) for r in results]))],
            [
                "share of issues truncated at max_seq_length",
                float(np.mean([any(s.truncated for s in r.sentences) for r in results])),
            ],
            ["similarity to own centroid (mean)", float(np.mean([r.similarity for r in results]))],
            [
                f"Spearman agreement, mean over {len(agreements)} issues with >= 3 sentences",
                float(np.mean(agreements)) if agreements else "n/a",
            ],
            [
                f"same top sentence, share of {len(ranked)} issues with >= 2 sentences",
                float(np.mean(top_agree)) if ranked else "n/a",
            ],
            ["completeness gap (mean)", f"{np.mean([r.completeness_gap for r in results]):.5f}"],
            ["completeness gap / |f(x) - f(baseline)| (mean)", f"{100 * np.mean(relative_gaps):.2f} %"],
            ["completeness gap / |f(x) - f(baseline)| (max)", f"{100 * np.max(relative_gaps):.2f} %"],
        ],
    )


if __name__ == "__main__":
    main()
