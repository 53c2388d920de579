"""Time the analysis stages' pure parts on synthetic issues: BERTopic c-TF-IDF, risk matrices, chi-square, HTML.

Usage: ``.venv/bin/python -m bench.topics_risk [--issues 5000] [--clusters 40] [--dim 384]``.
The issues are synthetic (random words per cluster, vectors near a cluster centre), so
only the timings mean something; Spark reads and MERGEs are not included.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd

from issuerisk.conf.settings import TopicsConfig
from issuerisk.display import table


def synthetic(n: int, clusters: int, dim: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Synthetic issues: cluster, framework, closed flag, resolution hours, a text and a vector."""
    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i}" for i in range(3000)])
    cluster = rng.integers(-1, clusters, size=n)
    centres = rng.normal(size=(clusters + 1, dim))
    vectors = (centres[cluster + 1] + rng.normal(size=(n, dim))).astype(np.float32)
    closed = rng.random(n) < 0.8
    frame = pd.DataFrame(
        {
            "cluster": cluster,
            "framework": rng.choice(["pytorch", "tensorflow", "keras", "unknown"], size=n, p=[0.45, 0.3, 0.2, 0.05]),
            "is_closed": closed,
            "resolution_hours": np.where(closed, rng.exponential(200.0, size=n) * (1 + (cluster % 5)), np.nan),
            "doc": [" ".join(vocab[(c + 1) * 50 + rng.integers(0, 80, size=30)]) for c in cluster],
            "x": rng.normal(size=n),
            "y": rng.normal(size=n),
        }
    )
    return frame, vectors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issues", type=int, default=5000)
    parser.add_argument("--clusters", type=int, default=40)
    parser.add_argument("--dim", type=int, default=384)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from issuerisk.analysis.compare import comparison_rows, contingency
    from issuerisk.analysis.risk import assess_scopes, risk_rows
    from issuerisk.analysis.topics import fit_topics
    from issuerisk.report.report import build_view, render

    frame, vectors = synthetic(args.issues, args.clusters, args.dim)
    timings = []

    t0 = time.perf_counter()
    import bertopic  # noqa: F401  (its import, umap and numba included, is timed apart from the fit)

    timings.append(("import bertopic", time.perf_counter() - t0, 0))

    t0 = time.perf_counter()
    conf = TopicsConfig()
    topics = fit_topics(
        frame["doc"].tolist(),
        vectors,
        frame["cluster"].to_numpy(),
        top_n_words=10,
        n_representative=5,
        min_df=1,
        ngram_max=2,
        keyword_min_coverage=conf.keyword_min_coverage,
        generic_lift=conf.generic_lift,
        keyword_max_patterns=conf.keyword_max_patterns,
    )
    timings.append(("topics (BERTopic c-TF-IDF)", time.perf_counter() - t0, len(topics)))

    t0 = time.perf_counter()
    matrices = assess_scopes(frame, [])
    rows = risk_rows("bench", matrices, {t.cluster: t.label for t in topics})
    timings.append(("risk matrices (all + 3 frameworks)", time.perf_counter() - t0, len(rows)))

    t0 = time.perf_counter()
    grades = {(scope, r.cluster): r.grade for scope, rows_ in matrices.items() for r in rows_}
    comparison, _ = comparison_rows("bench", contingency(frame, [r.cluster for r in matrices["all"]]), grades)
    timings.append(("chi-square comparison", time.perf_counter() - t0, len(comparison)))

    t0 = time.perf_counter()
    view = build_view(
        "bench",
        rows,
        [{"cluster": t.cluster, "keywords": t.keywords, "representative": []} for t in topics],
        comparison,
        list(zip(frame["x"], frame["y"], frame["cluster"])),
        None,
        0,
    )
    size = len(render(view).encode())
    timings.append(("HTML report (render)", time.perf_counter() - t0, size))

    table(
        f"Analysis stages on {args.issues:,} synthetic issues, {args.clusters} clusters, dim {args.dim}",
        ["step", "seconds", "output rows / bytes"],
        timings,
    )


if __name__ == "__main__":
    main()
