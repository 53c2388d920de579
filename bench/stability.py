"""Seed stability of the clustering on real issues: one seeded run against the consensus, disjoint seed sets.

Run ``.venv/bin/python -m bench.stability`` (``--issues 2000``, ``--runs 20``,
``--pairs 3``). A seeded sample of the real issues of
``../shared/data/lai2024-ml-issues`` is summarized as the pipeline does
(extractive rules, project-only words masked with terms learned from the whole
corpus), embedded once with MiniLM (cached in ``bench/out``), and clustered:

* the single run (``cluster.method: single``) with seeds 0, 1, 2, ...: adjusted Rand index between seeds
  (noise counted as a label), noise share, clusters and the largest cluster's share;
* the consensus with seed sets 0..R-1 against R..2R-1 (and further disjoint pairs): the same figures, the
  per-cluster bootstrap Jaccard stability and the seconds it costs.

The target of issue 17: disjoint seed sets agree at ARI >= 0.90 with a noise share no higher than the single run's.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import random
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
REAL_ISSUES = REPO.parent / "shared" / "data" / "lai2024-ml-issues" / "issues"
OUT = REPO / "bench" / "out"


def read_repository(file: Path) -> tuple[str, list[dict]]:
    """One file of the real corpus: its repository (``owner/name``) and its issue objects, pull requests left out."""
    with gzip.open(file, "rt", encoding="utf-8") as fh:
        objects = [json.loads(line) for line in fh]
    return file.name.removesuffix(".jsonl.gz").replace("__", "/", 1), [o for o in objects if "pull_request" not in o]


def label_names(obj: dict) -> list[str]:
    """The names of an issue object's labels (objects with a name from the API, plain strings in some dumps)."""
    return [lab.get("name") if isinstance(lab, dict) else str(lab) for lab in obj.get("labels") or []]


def label_kinds(label_lists: list[list[str]]) -> list[str | None]:
    """The kind each list of label names gives (None when it names none), by the project's label patterns."""
    from issuerisk.analysis.kinds import compile_label_patterns, kind_of_labels
    from issuerisk.conf.settings import KIND_LABEL_PATTERNS

    patterns = compile_label_patterns(KIND_LABEL_PATTERNS)
    return [kind_of_labels(labels, patterns) for labels in label_lists]


def real_sample(n: int, seed: int = 0, exclude: frozenset[str] = frozenset()) -> list[dict]:
    """A seeded sample of ``n`` real issues (repository, number, title, body, label names): sorted (file, line), then
    shuffled; files named in ``exclude`` left out."""
    rows = []
    for file in sorted(REAL_ISSUES.glob("*.jsonl.gz")):
        if file.name in exclude:
            continue
        repository, objects = read_repository(file)
        rows += [
            {
                "repository": repository,
                "number": o["number"],
                "title": o.get("title") or "",
                "body": o.get("body") or "",
                "labels": label_names(o),
            }
            for o in objects
        ]
    random.Random(seed).shuffle(rows)
    return rows[:n] if n else rows


def pipeline_texts(
    issues: list[dict], corpus: list[dict], budget: int = 96, rules: str = "r2", masked: bool = True
) -> list[str]:
    """The texts the pipeline embeds: extractive summaries, project-only words (learned on ``corpus``) removed."""
    from issuerisk.conf.settings import MaskConfig
    from issuerisk.summarizers.extractive import summarize
    from issuerisk.text.masking import learn_terms, mask, repository_words

    words: dict[str, set[str]] = {}
    if masked:
        rules_ = MaskConfig()
        for repository, term, _, _ in learn_terms(
            [r["repository"] for r in corpus],
            (f"{r['title']} {r['body'][:4000]}" for r in corpus),
            rules_.min_docs,
            rules_.min_share,
        ):
            words.setdefault(repository, set()).add(term)
    texts = []
    for r in issues:
        summary = summarize(r["title"], r["body"], budget, rules)
        texts.append(
            mask(summary, repository_words(r["repository"]) | words.get(r["repository"], set())) if masked else summary
        )
    return texts


def embeddings(texts: list[str]) -> np.ndarray:
    """MiniLM vectors of ``texts`` as the pipeline's default ``embed`` section makes them (its CPU backend and batch
    size, :func:`~issuerisk.encoding.encoders.encoder_spec`), cached in bench/out by the backend and a hash of the
    texts."""
    from issuerisk.conf.settings import EmbedConfig
    from issuerisk.encoding.encoders import build_encoder, encoder_spec

    embed = EmbedConfig()
    OUT.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(chr(0).join(texts).encode("utf-8", "surrogatepass")).hexdigest()[:16]
    path = OUT / f"minilm-{embed.backend}-{digest}.npy"
    if path.is_file():
        return np.load(path)
    t0 = time.perf_counter()
    spec = encoder_spec(embed)
    vectors = build_encoder(spec).encode(texts)
    print(f"embedded {len(texts):,} texts in {time.perf_counter() - t0:.0f} s", flush=True)
    np.save(path, vectors)
    return vectors


def _member(prepared, params, seed: int) -> dict:
    """One member run in a worker process (its own numba cache switch-on)."""
    from issuerisk.clustering.backends import CpuBackend, enable_jit_cache, member_run
    from issuerisk.clustering.consensus import selections_of

    enable_jit_cache(str(OUT / "numba"))
    return member_run(CpuBackend(), prepared, params, seed, selections_of(params))


def consensus_labels(prepared, params, seeds: list[int]) -> tuple[np.ndarray, np.ndarray, float]:
    """(labels, per-cluster stability, wall seconds) of the consensus of seeded member runs, one worker process per core
    (as the pipeline's Ray tasks)."""
    from joblib import Parallel, delayed

    from issuerisk.clustering.consensus import combine

    t0 = time.perf_counter()
    # max_nbytes=None: copies, not read-only memmaps (a member writes into its arrays; 30,000 issues pass 1 MB)
    members = Parallel(n_jobs=os.cpu_count(), max_nbytes=None)(delayed(_member)(prepared, params, s) for s in seeds)
    labels, _, stability, _ = combine(members, prepared, params, params.member_selection == "auto")
    return labels, stability, time.perf_counter() - t0


def kind_agreement(clusters, kinds) -> tuple[float, int]:
    """NMI of the clusters with the issues' own label kinds (defect/feature/question) on the labelled issues outside
    noise, and how many those are."""
    from sklearn.metrics import normalized_mutual_info_score

    from issuerisk.analysis.kinds import CORE_KINDS

    pairs = [(c, k) for c, k in zip(clusters, kinds) if c >= 0 and k in CORE_KINDS]
    return (float(normalized_mutual_info_score(*zip(*pairs))) if pairs else float("nan")), len(pairs)


def describe(labels: np.ndarray) -> tuple[int, float, float]:
    clustered = labels[labels >= 0]
    return (
        len(set(clustered.tolist())),
        float(np.mean(labels < 0)),
        float(np.bincount(clustered).max() / len(labels)) if len(clustered) else 0.0,
    )


def held_out_files() -> frozenset[str]:
    """The corpus files of bench.pipeline's subsets (the figures reported against BERTopic), kept out of a ``dev``
    sample."""
    from bench.pipeline import subsets

    chosen = subsets()
    return frozenset(f.name for name in ("small", "large") for f in chosen[name])


def main(argv: list[str] | None = None) -> None:
    from sklearn.metrics import adjusted_rand_score

    from issuerisk.clustering.backends import CpuBackend, enable_jit_cache, single_run, umap_epochs
    from issuerisk.conf.settings import ClusterConfig
    from issuerisk.display import table

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--issues", type=int, default=2000)
    p.add_argument("--runs", type=int, default=20, help="member runs per consensus (R)")
    p.add_argument("--pairs", type=int, default=2, help="disjoint seed-set pairs of the consensus")
    p.add_argument("--single-seeds", type=int, default=6, help="seeds of the single run (all pairs compared)")
    p.add_argument(
        "--budget",
        type=int,
        default=96,
        help="extractive summary budget in whitespace tokens (the pipeline's default: 96); "
        "another budget also reports the ARI of its consensus against the default budget's on the same seeds",
    )
    p.add_argument(
        "--n-epochs",
        type=int,
        default=None,
        help="UMAP epochs (cluster.n_epochs; default: 500 under cluster.fewer_epochs_from issues, 200 from there, "
        "100 from cluster.fewest_epochs_from)",
    )
    p.add_argument(
        "--repositories",
        choices=("all", "dev"),
        default="all",
        help="dev: only repositories outside bench.pipeline's subsets (choose settings there, report on those subsets)",
    )
    args = p.parse_args(argv)
    enable_jit_cache(str(OUT / "numba"))
    corpus = real_sample(0, exclude=held_out_files() if args.repositories == "dev" else frozenset())
    issues = corpus[: args.issues]
    kinds = label_kinds([r["labels"] for r in issues])
    texts = pipeline_texts(issues, corpus, budget=args.budget)
    vectors = embeddings(texts)
    print(f"budget {args.budget}: {np.mean([len(t.split()) for t in texts]):.1f} words per text on average", flush=True)
    params = ClusterConfig(n_epochs=args.n_epochs)
    backend = CpuBackend()
    prepared = backend.prepare(vectors, params)
    rows = []

    singles, seconds = [], []
    for seed in range(args.single_seeds):
        t0 = time.perf_counter()
        singles.append(single_run(backend, prepared, params, seed, with_coords=False).labels)
        seconds.append(time.perf_counter() - t0)
    if len(singles) >= 2:  # --single-seeds 0 leaves the single run out (a whole-corpus consensus on its own)
        aris = [adjusted_rand_score(a, b) for i, a in enumerate(singles) for b in singles[i + 1 :]]
        shapes = np.array([describe(s) for s in singles])
        rows.append(
            [
                "single run (eom)",
                f"seeds 0..{args.single_seeds - 1}, all pairs",
                round(float(np.mean(aris)), 3),
                round(float(np.min(aris)), 3),
                round(float(shapes[:, 0].mean()), 1),
                round(float(shapes[:, 1].mean()), 3),
                round(float(shapes[:, 2].mean()), 3),
                "",
                round(float(np.mean([kind_agreement(s, kinds)[0] for s in singles])), 3),
                round(float(np.mean(seconds)), 1),
            ]
        )

    consensus_runs = []
    for k in range(2 * args.pairs):
        seeds = list(range(k * args.runs, (k + 1) * args.runs))
        consensus_runs.append(consensus_labels(prepared, params, seeds))
        print(
            f"consensus of seeds {seeds[0]}..{seeds[-1]}: {describe(consensus_runs[-1][0])} in "
            f"{consensus_runs[-1][2]:.0f} s",
            flush=True,
        )
    for k in range(args.pairs):
        (a, stab_a, t_a), (b, _, t_b) = consensus_runs[2 * k], consensus_runs[2 * k + 1]
        clusters, noise, largest = describe(a)
        rows.append(
            [
                f"consensus R={args.runs}",
                f"seeds {2 * k * args.runs}.. vs {(2 * k + 1) * args.runs}..",
                round(adjusted_rand_score(a, b), 3),
                "",
                clusters,
                round(noise, 3),
                round(largest, 3),
                f"median {np.nanmedian(stab_a):.2f}, {np.mean(stab_a >= 0.75):.0%} >= 0.75, "
                f"{np.mean(stab_a < 0.6):.0%} < 0.6",
                round((kind_agreement(a, kinds)[0] + kind_agreement(b, kinds)[0]) / 2, 3),
                round((t_a + t_b) / 2, 1),
            ]
        )
    if args.budget != 96:
        reference, _, _ = consensus_labels(
            backend.prepare(embeddings(pipeline_texts(issues, corpus)), params), params, list(range(args.runs))
        )
        rows.append(
            [
                f"consensus R={args.runs}, budget {args.budget} vs 96",
                f"seeds 0..{args.runs - 1} both",
                round(adjusted_rand_score(consensus_runs[0][0], reference), 3),
                "",
                *describe(reference)[:1],
                "",
                "",
                "",
                round(kind_agreement(reference, kinds)[0], 3),
                "",
            ]
        )
    table(
        f"bench.stability: {len(issues):,} real issues of "
        f"{'dev repositories' if args.repositories == 'dev' else 'all repositories'} "
        f"(MiniLM, extractive r2 summaries of {args.budget} words, project words masked), UMAP epochs "
        f"{umap_epochs(params, len(issues))}, {os.cpu_count()} cores",
        [
            "method",
            "seeds",
            "ARI mean",
            "ARI min",
            "clusters",
            "noise share",
            "largest share",
            "cluster stability (Jaccard)",
            "NMI label kinds",
            "seconds per clustering",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
