"""Stage ``explain``: why an issue sits in its pattern, by occlusion and by integrated gradients, in a Ray task.

In a run it explains the representative issues (those nearest the centroid,
as ``topics`` picks them) of the most severe graded clusters
(``explain.clusters`` x ``explain.representatives``); ``issuerisk explain
OWNER/REPO#N`` explains one issue of a run and prints its text highlighted.
The explained text is exactly what was embedded (the summary with project-only
words masked, and the model's instruction prefix, which is never attributed);
the target is the cosine similarity of its embedding to the cluster's centroid
(the normalized mean of its members' embeddings). The methods themselves live
in :mod:`issuerisk.ray_tasks.attributions`; their rows go to
``gold_explanations``.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pyarrow as pa

from issuerisk.clustering.centroids import centroids, representatives
from issuerisk.constants import NOISE
from issuerisk.context import Context
from issuerisk.gold import resolve_run_id, run_rows
from issuerisk.grading.matrix import severity
from issuerisk.schemas.gold import GOLD_CLUSTERS, GOLD_EMBEDDINGS, GOLD_EXPLANATIONS, GOLD_RISK
from issuerisk.schemas.silver import SILVER_ISSUES, SILVER_PROJECT_TERMS, SILVER_SUMMARIES
from issuerisk.stage import Option, Stage

ISSUE_REF = re.compile(r"(?P<repository>[A-Za-z0-9_.\-]+/[A-Za-z0-9_.\-]+)#(?P<number>\d+)")


def parse_issue(ref: str) -> tuple[str, int]:
    """``owner/repo#123`` -> (``owner/repo``, 123).

    Raises:
        ValueError: the reference is not shaped like that.
    """
    match = ISSUE_REF.fullmatch(ref.strip())
    if not match:
        raise ValueError(f"issue {ref!r} is not OWNER/REPO#NUMBER (e.g. pytorch/vision#1234)")
    return match["repository"], int(match["number"])


def explain_batch(
    spec: Any, items: list[dict[str, Any]], steps: int, top_tokens: int, max_chars: int
) -> list[dict[str, Any]]:
    """Explain each item (repository, number, cluster, text, centroid) with one model load; the rows of
    ``gold_explanations`` (no run id)."""
    from dataclasses import replace

    from issuerisk.encoding.encoders import TransformerEncoder
    from issuerisk.ray_tasks.attributions import explain

    model = TransformerEncoder(replace(spec, fp16=False)).model  # gradients in full precision, on any device
    rows = []
    for item in items:
        result = explain(
            model,
            item["text"][:max_chars],
            np.asarray(item["centroid"], dtype=np.float32),
            prefix=spec.query_prefix,
            steps=steps,
            top_tokens=top_tokens,
        )
        for span in [*result.sentences, *result.tokens]:
            rows.append(
                {
                    "repository": item["repository"],
                    "number": item["number"],
                    "cluster": item["cluster"],
                    "unit": span.unit,
                    "position": span.position,
                    "start": span.start,
                    "end": span.end,
                    "text": span.text,
                    "perturbation": span.perturbation,
                    "gradient": span.gradient,
                    "truncated": span.truncated,
                    "similarity": result.similarity,
                    "agreement": result.agreement,
                    "completeness_gap": result.completeness_gap,
                    "seconds": result.seconds,
                }
            )
    return rows


def _items(ctx: Context, run_id: str, issue: tuple[str, int] | None) -> list[dict[str, Any]]:
    """What to explain: the one issue asked for, or the representatives of the most severe graded clusters."""
    from issuerisk.vectors import load_current_vectors

    tables, conf = ctx.lake.arrow, ctx.cfg.explain
    keys, vectors = load_current_vectors(tables, ctx.cfg, with_text=True)
    clusters = run_rows(tables, GOLD_CLUSTERS, run_id, ["repository", "number", "cluster"])
    if clusters.empty:
        raise LookupError(
            f"run {run_id!r} has no rows in gold_clusters; run `issuerisk cluster` first or pick a run from `issuerisk "
            "runs`"
        )
    label_of = {(r, int(n)): int(c) for r, n, c in zip(clusters["repository"], clusters["number"], clusters["cluster"])}
    key_list = list(zip(keys.column("repository").to_pylist(), keys.column("number").to_pylist()))
    labels = np.array([label_of.get(k, NOISE) for k in key_list])
    texts = keys.column("text").to_pylist()
    means = centroids(vectors, labels)
    if issue is not None:
        if issue not in label_of:
            raise LookupError(
                f"{issue[0]}#{issue[1]} was not clustered in run {run_id} (not in its sample, or filtered out)"
            )
        position = key_list.index(issue)
        cluster = labels[position]
        if cluster == NOISE:  # noise: explain toward the nearest pattern, and say so
            cluster = max(means, key=lambda c: float(vectors[position] @ means[c]))
            print(f"{issue[0]}#{issue[1]} is noise in run {run_id}; explained toward its nearest cluster, {cluster}")
        return [
            {
                "repository": issue[0],
                "number": issue[1],
                "cluster": int(cluster),
                "text": texts[position],
                "centroid": means[int(cluster)].tolist(),
            }
        ]
    risk = run_rows(tables, GOLD_RISK, run_id, ["scope", "cluster", "grade", "n"])
    graded = risk[(risk["scope"] == "all") & risk["grade"].notna()]
    order = sorted(zip(graded["cluster"], graded["grade"], graded["n"]), key=lambda t: (-severity(t[1]), -t[2]))[
        : conf.clusters
    ]
    reps = representatives(vectors, labels, conf.representatives)
    return [
        {
            "repository": key_list[p][0],
            "number": int(key_list[p][1]),
            "cluster": int(c),
            "text": texts[p],
            "centroid": means[int(c)].tolist(),
        }
        for c, _, _ in order
        for p in reps.get(int(c), [])
    ]


def run(ctx: Context, run_id: str | None = None, issue: str | None = None) -> dict[str, Any]:
    """Explain representative issues of the graded clusters (or one issue) of a run into ``gold_explanations``.

    Raises:
        ValueError: ``issue`` is not OWNER/REPO#NUMBER.
        LookupError: the run or the issue was not clustered.
    """
    import ray

    from issuerisk.encoding.encoders import cluster_pool_plan, encoder_spec

    wanted = parse_issue(issue) if issue else None
    tables = ctx.lake.arrow
    run_id = resolve_run_id(tables, run_id)
    items = _items(ctx, run_id, wanted)
    if not items:
        return {"run_id": run_id, "explained": 0}
    ctx.ray()
    plan = cluster_pool_plan(ctx.cfg.embed)
    spec = encoder_spec(ctx.cfg.embed, plan)
    conf = ctx.cfg.explain
    task = ray.remote(explain_batch).options(num_cpus=plan.num_cpus, num_gpus=plan.num_gpus, max_retries=0)
    rows = ray.get(task.remote(spec, items, conf.steps, conf.top_tokens, conf.max_chars))
    table_rows = pa.Table.from_pylist([{**r, "run_id": run_id} for r in rows], schema=GOLD_EXPLANATIONS.arrow)
    tables.merge(GOLD_EXPLANATIONS, table_rows)
    per_issue = {(r["repository"], r["number"]): r for r in rows}
    agreements = [r["agreement"] for r in per_issue.values() if r["agreement"] is not None]
    seconds = [r["seconds"] for r in per_issue.values()]
    if wanted is not None:
        show(rows)
    else:
        from issuerisk.display import table

        table(
            f"explained {len(per_issue)} representative issues of {len({r['cluster'] for r in rows})} graded clusters "
            f"of run {run_id}",
            ["cluster", "issue", "similarity", "agreement", "top sentence (occlusion)", "same top by gradients", "s"],
            [
                [
                    r["cluster"],
                    f"{k[0]}#{k[1]}",
                    f"{r['similarity']:.3f}",
                    "" if r["agreement"] is None else f"{r['agreement']:+.2f}",
                    *_tops(rows, k),
                    f"{r['seconds']:.2f}",
                ]
                for k, r in per_issue.items()
            ],
        )
    return {
        "run_id": run_id,
        "explained": len(per_issue),
        "rows": len(rows),
        "mean_agreement": round(float(np.mean(agreements)), 3) if agreements else None,
        "seconds_per_issue": round(float(np.mean(seconds)), 2) if seconds else None,
    }


def _tops(rows: list[dict[str, Any]], key: tuple[str, int]) -> list[str]:
    """The sentence occlusion ranks first for one issue, and whether integrated gradients ranks the same one first."""
    sentences = [
        r for r in rows if (r["repository"], r["number"]) == key and r["unit"] == "sentence" and not r["truncated"]
    ]
    if not sentences:
        return ["", ""]
    by_occlusion = max(sentences, key=lambda r: r["perturbation"] or 0.0)
    by_gradient = max(sentences, key=lambda r: r["gradient"])
    return [by_occlusion["text"][:60], "yes" if by_occlusion is by_gradient else "no"]


def show(rows: list[dict[str, Any]]) -> None:
    """Print one issue's sentences highlighted by each method (terminal colours) and their agreement."""
    from rich.text import Text

    from issuerisk.display import console, plain, shown, table

    sentences = sorted((r for r in rows if r["unit"] == "sentence"), key=lambda r: r["position"])
    if not sentences:
        return
    first = sentences[0]
    console.print(
        f"{shown(first['repository'])}#{first['number']} in cluster {first['cluster']}: similarity "
        f"{first['similarity']:.3f} to its centroid; "
        "agreement of the methods over sentences (Spearman) "
        f"{first['agreement'] if first['agreement'] is None else round(first['agreement'], 2)}"
    )
    for method in ("perturbation", "gradient"):
        scores = np.array([r[method] or 0.0 for r in sentences])
        top = float(np.abs(scores).max()) or 1.0
        text = Text(f"{method}: ")
        for r, score in zip(sentences, scores):
            level = score / top
            shade = "dark_green" if level > 0.5 else "green4" if level > 0.2 else "red3" if level < -0.2 else "default"
            text.append(plain(r["text"]) + " ", style=f"on {shade}")
        console.print(text)
    table(
        "sentences (higher: pulls the text toward the cluster)",
        ["#", "perturbation", "gradient", "sentence"],
        [
            [
                r["position"],
                f"{r['perturbation']:+.4f}" if r["perturbation"] is not None else "",
                f"{r['gradient']:+.4f}",
                r["text"][:90],
            ]
            for r in sentences
        ],
    )


STAGE = Stage(
    "explain",
    "Why issues sit in their pattern: occlusion and integrated gradients toward the cluster centroid, into "
    "gold_explanations",
    run,
    reads=(
        GOLD_EMBEDDINGS.name,
        GOLD_CLUSTERS.name,
        GOLD_RISK.name,
        SILVER_SUMMARIES.name,
        SILVER_ISSUES.name,
        SILVER_PROJECT_TERMS.name,
    ),
    writes=(GOLD_EXPLANATIONS.name,),
    options=(
        Option(
            ("issue",),
            "OWNER/REPO#NUMBER to explain (default: the representatives of the graded clusters)",
            argparse={"nargs": "?"},
        ),
        Option(("--run",), "the clustering run (default: the latest)", argparse={"dest": "run_id"}),
    ),
    sections=("explain",),
)
