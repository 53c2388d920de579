"""Stage ``assign``: issues a clustering run did not cluster, placed on its patterns without re-clustering.

The issues are those in silver that the run has no ``gold_clusters`` row for: ingested after it, or outside its
sample. They are embedded exactly as the run embedded its own (the run's recorded summarizer, mask and embedding
model: :func:`configure`), so first the registered stages that make their silver rows, summaries and vectors run
when something is missing (the filter when bronze moved past the silver build; summarize and embed when an issue has
no current vector). Each is then placed by :func:`issuerisk.clustering.placement.place` (its nearest issues of the
run vote, the consensus's ``cluster.attach_threshold`` decides) into ``gold_assignments``, or marked noise with the
reason. Nothing of the run changes: its clusters, topics, grades and every row under its id stay as they were.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import numpy as np

from issuerisk.clustering.centroids import unit
from issuerisk.clustering.placement import place, similarity_floor
from issuerisk.conf import Config, validate
from issuerisk.conf.loader import as_recorded
from issuerisk.constants import NOISE
from issuerisk.context import Context
from issuerisk.display import table
from issuerisk.gold import clustering_run, resolve_run_id, run_rows, run_table, topic_fields
from issuerisk.lakehouse import ArrowTables
from issuerisk.sampling import sampled_keys
from issuerisk.schemas.bronze import BRONZE_ISSUES
from issuerisk.schemas.gold import GOLD_ASSIGNMENTS, GOLD_CLUSTERS, GOLD_EMBEDDINGS, GOLD_TOPICS
from issuerisk.schemas.ledger import RUNS
from issuerisk.schemas.silver import SILVER_ISSUES, SILVER_PROJECT_TERMS, SILVER_SUMMARIES
from issuerisk.silver import SILVER_NAMES
from issuerisk.stage import RUN_ID, Stage, execute
from issuerisk.vectors import current_texts, load_current_vectors, pending

RECORDED_SECTIONS = ("summarize", "mask", "embed")
"""The config sections that decide an issue's vector: assign takes them from the run it places issues on."""


def configure(cfg: Config, args: dict[str, Any]) -> tuple[Config, dict[str, int]]:
    """This config with the clustering run's recorded summarizer, mask and embedding model, over all silver issues
    (no sample)."""
    tables = ArrowTables(cfg)
    run_id = clustering_run(tables, resolve_run_id(tables, args.get("run_id")))
    rows = tables.read(RUNS, columns=["config_json"], where={"run_id": run_id}).to_pylist()
    if not rows or not rows[0]["config_json"]:
        raise LookupError(f"run {run_id} has no recorded config in the runs table; name a run with `issuerisk runs`")
    recorded = as_recorded(json.loads(rows[0]["config_json"]))
    data = cfg.model_dump(mode="json")
    data.update({section: recorded[section] for section in RECORDED_SECTIONS if section in recorded})
    data["project"]["sample_size"] = None
    return validate(data), {}


def _silver_is_behind(tables: ArrowTables) -> bool:
    """Bronze has commits the silver build did not read (issues ingested after the last filter)."""
    note = tables.commit_metadata(SILVER_ISSUES) or {}
    bronze = tables.version(BRONZE_ISSUES)
    return bronze is not None and (note.get("bronze_version") is None or bronze > int(note["bronze_version"]))


def _refresh(ctx: Context, clustered: set[tuple[str, int]]) -> list[str]:
    """Run the registered stages that give new issues silver rows, summaries and vectors, when something is missing;
    the names of those that ran."""
    tables, stages = ctx.lake.arrow, list((ctx.stages or {}).values())
    ran = []

    def refresh(table_name: str) -> None:  # a writer this command ran already (run's own stages) is not run again
        writer = next((s for s in stages if table_name in s.writes and s.name not in ctx.run.metrics), None)
        if writer is not None:
            execute(writer, ctx, {})
            ran.append(writer.name)

    if _silver_is_behind(tables):
        refresh(SILVER_ISSUES.name)
    keys = sampled_keys(tables, ctx.cfg)  # the run's sample, in a sampled run's last step; else every silver issue
    if keys is None:
        silver = tables.read(SILVER_ISSUES, columns=["repository", "number"])
        keys = set(zip(silver.column("repository").to_pylist(), silver.column("number").to_pylist()))
    new = keys - clustered
    if not new:
        return ran
    texts = current_texts(tables, ctx.cfg)
    if new - set(zip(texts.column("repository").to_pylist(), texts.column("number").to_pylist())):
        refresh(SILVER_SUMMARIES.name)
    todo = pending(tables, ctx.cfg)
    if new & set(zip(todo.column("repository").to_pylist(), todo.column("number").to_pylist())):
        refresh(GOLD_EMBEDDINGS.name)  # only for issues the run did not cluster: not for old unembeddable texts
    return ran


def run(ctx: Context, run_id: str | None = None) -> dict[str, Any]:
    """Place the issues the clustering run (default: the latest) did not cluster on its patterns."""
    tables, cfg = ctx.lake.arrow, ctx.cfg
    run_id = clustering_run(tables, resolve_run_id(tables, run_id))
    clusters = run_rows(tables, GOLD_CLUSTERS, run_id, ["repository", "number", "cluster", "model"])
    clustered = set(zip(clusters["repository"], clusters["number"].astype(int)))
    model = str(clusters["model"].dropna().iloc[0]) if clusters["model"].notna().any() else cfg.embed.key
    if model != cfg.embed.key:
        raise ValueError(
            f"run {run_id} clustered vectors of {model!r} but this configuration embeds with {cfg.embed.key!r}; run "
            f"`issuerisk assign {run_id}` on its own (it takes the run's model) or set embed.model"
        )
    ran = _refresh(ctx, clustered)
    keys, vectors = load_current_vectors(tables, cfg)
    repos, numbers = keys.column("repository").to_pylist(), keys.column("number").to_pylist()
    where = {key: i for i, key in enumerate(zip(repos, numbers))}
    known = [(r, int(n)) for r, n in zip(clusters["repository"], clusters["number"]) if (r, int(n)) in where]
    labels = dict(zip(zip(clusters["repository"], clusters["number"].astype(int)), clusters["cluster"].astype(int)))
    new = [key for key in zip(repos, numbers) if key not in clustered]
    known_vectors = unit(vectors[[where[k] for k in known]])
    known_labels = np.array([labels[k] for k in known], dtype=np.int64)
    floor = similarity_floor(known_vectors, cfg.assign.floor_quantile, cfg.assign.floor_sample, cfg.project.seed)
    placed = place(
        known_vectors,
        known_labels,
        unit(vectors[[where[k] for k in new]]) if new else np.zeros((0, vectors.shape[1]), np.float32),
        cfg.assign.neighbours,
        cfg.cluster.attach_threshold,
        floor,
    )
    topics = topic_fields(tables, run_id, "pattern_id", "label")
    pattern, label = topics["pattern_id"], topics["label"]
    now = datetime.now(timezone.utc)
    rows = [
        {
            "repository": repository,
            "number": number,
            "run_id": run_id,
            "pattern_id": pattern.get(p.cluster) if p.cluster != NOISE else None,
            "cluster": p.cluster,
            "vote_share": p.vote_share,
            "similarity": p.similarity,
            "nearest_similarity": p.nearest,
            "reason": p.reason,
            "model": cfg.embed.key,
            "assigned_by": ctx.run.run_id,
            "assigned_at": now,
        }
        for (repository, number), p in zip(new, placed)
    ]
    tables.merge(GOLD_ASSIGNMENTS, run_table(GOLD_ASSIGNMENTS, rows))
    on_patterns = [r for r in rows if r["cluster"] != NOISE]
    counts: dict[int, int] = {}
    for r in on_patterns:
        counts[r["cluster"]] = counts.get(r["cluster"], 0) + 1
    table(
        f"{len(rows):,} issue(s) not clustered by run {run_id}: {len(on_patterns):,} placed on its patterns, "
        f"{len(rows) - len(on_patterns):,} noise (reasons in gold_assignments)",
        ["cluster", "pattern", "new issues"],
        [(c, label.get(c) or "", n) for c, n in sorted(counts.items(), key=lambda kv: -kv[1])],
    )
    return {
        "run_id": run_id,
        "assigned": len(on_patterns),
        "noise": len(rows) - len(on_patterns),
        "similarity_floor": round(floor, 4),
        "refreshed_by": ran,
    }


STAGE = Stage(
    "assign",
    "Place the issues a clustering run did not cluster (ingested later, or outside its sample) on its patterns, or on "
    "noise with the reason, without changing the run (gold_assignments)",
    run,
    reads=(
        GOLD_CLUSTERS.name,
        GOLD_TOPICS.name,
        GOLD_EMBEDDINGS.name,
        *sorted(SILVER_NAMES),
        SILVER_SUMMARIES.name,
        SILVER_PROJECT_TERMS.name,
        BRONZE_ISSUES.name,
        RUNS.name,
    ),
    writes=(GOLD_ASSIGNMENTS.name,),
    options=(RUN_ID,),
    sections=("assign", "cluster", *RECORDED_SECTIONS),
    configure=configure,
)
