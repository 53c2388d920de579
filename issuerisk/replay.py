"""Command ``replay RUN_ID``: re-run a recorded run from its manifest and compare the answers.

The recorded row in ``runs`` holds the resolved config (seeds included), the
Delta version of every table the run read and wrote, the package versions and
the runtime (Python, Spark, Java, CPU, GPU, the embedding model's weight hash).
A replay:

1. loads that config (only the warehouse is today's) and pins every input table
   at the version the run left it (:meth:`ArrowTables.pinned`: reads time-travel,
   writes are refused), after checking that no pinned version was vacuumed away;
2. prints what differs between the recorded environment and this one;
3. re-executes the run's stages whose every output is keyed by run id (:func:`replayed_stages`, from the
   registry: for a ``run`` profile, drift, cluster, topics, risk, compare, explain, report, factsheet; for a
   ``cluster`` cluster) into a new run id; the content caches before them (silver, summaries, masks,
   embeddings, issue kinds) are read as they were, not recomputed;
4. compares the new ``gold_clusters`` labels and ``gold_risk`` grades with the
   original's and prints every difference. On the CPU backend they must be
   identical; a cuML (GPU) clustering is not bit-repeatable, so there the replay
   passes when the labels agree to ``cluster.replay_min_ari`` and says so.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from issuerisk.conf import Config, validate
from issuerisk.conf.loader import as_recorded
from issuerisk.context import Context
from issuerisk.display import console, table
from issuerisk.gold import RUN_ID_PATTERN, run_rows
from issuerisk.lakehouse import ArrowTables
from issuerisk.lakehouse.arrow_tables import TableVersionError
from issuerisk.ledger import machine, package_versions
from issuerisk.schemas import TABLES
from issuerisk.schemas.gold import GOLD_CLUSTERS, GOLD_RISK
from issuerisk.schemas.ledger import RUNS
from issuerisk.stage import Option, Stage, execute
from issuerisk.stages import PIPELINE, REGISTRY


def replayed_stages(command: str) -> tuple[Stage, ...]:
    """The stages a replay of ``command`` re-executes, from the registry: those of the pipeline (for ``run``) or the
    command's own stage whose every output table is keyed by run id, so they write under the replay's own id and
    change nothing a run shares; empty unless one of them clusters (writes ``gold_clusters``): only a clustering is
    replayed."""
    stages = PIPELINE if command == "run" else (REGISTRY[command],) if command in REGISTRY else ()
    replayed = tuple(s for s in stages if all("run_id" in TABLES[t].key for t in s.writes))
    return replayed if any(GOLD_CLUSTERS.name in s.writes for s in replayed) else ()


RUNTIME_KEYS = (
    "python",
    "platform",
    "cpu",
    "gpu",
    "spark",
    "java",
    "embed_model",
    "embed_backend",
    "embed_device",
    "cluster_backend",
)


class ReplayError(LookupError):
    """The run cannot be replayed (unknown, unfinished, not a clustering run, or its inputs are gone)."""


def recorded_run(tables: ArrowTables, run_id: str) -> dict[str, Any]:
    """The ledger row of ``run_id``.

    Raises:
        ReplayError: the id is malformed, unknown, the run did not succeed, or its command is not replayable.
    """
    if not RUN_ID_PATTERN.fullmatch(run_id):
        raise ReplayError(f"run id {run_id!r} is not valid; list runs with `issuerisk runs`")
    rows = tables.read(RUNS, where={"run_id": run_id}).to_pylist()
    if not rows:
        raise ReplayError(
            f"run {run_id} is not in {tables.cfg.project.database}.runs of {tables.cfg.project.warehouse}; list runs "
            "with `issuerisk runs`"
        )
    row = rows[0]
    if not replayed_stages(row["command"]):
        raise ReplayError(
            f"run {run_id} was `issuerisk {row['command']}`; replay re-runs clusterings (`run` or `cluster`): "
            "replay the run that made the clustering instead (`issuerisk runs --command run`)"
        )
    if row["status"] != "succeeded":
        raise ReplayError(
            f"run {run_id} ended {row['status']!r} ({row['error'] or 'no error recorded'}); only succeeded runs have "
            "answers to compare"
        )
    return row


def input_pins(row: dict[str, Any]) -> dict[str, int]:
    """Table -> version a replay reads: each table the run read, as the run last left it; the tables the
    replayed stages write (keyed by run id) and the ledger itself are not pinned."""
    written = {t for stage in replayed_stages(row["command"]) for t in stage.writes} | {RUNS.name}
    versions = {**dict(row["tables_read"] or {}), **dict(row["tables_written"] or {})}
    return {t: int(v) for t, v in sorted(versions.items()) if t not in written and t in TABLES}


def check_inputs(tables: ArrowTables, pins: dict[str, int]) -> None:
    """Every pinned version still readable, with all its data files.

    Raises:
        ReplayError: naming each table whose version was vacuumed (files gone) or whose log entry expired.
    """
    gone = []
    for name, version in pins.items():
        try:
            missing = tables.missing_files(name, version)
        except TableVersionError as exc:
            gone.append(f"{name}@v{version}: {exc}")
            continue
        if missing:
            gone.append(f"{name}@v{version}: {len(missing)} data file(s) were removed by VACUUM (e.g. {missing[0]})")
    if gone:
        raise ReplayError(
            "the run's inputs are no longer in the warehouse, so it cannot be replayed exactly:\n  "
            + "\n  ".join(gone)
            + "\nkeep versions longer (delta.deletedFileRetentionDuration, delta.logRetentionDuration) for runs you "
            "must replay"
        )


def configure(cfg: Config, args: dict[str, Any]) -> tuple[Config, dict[str, int]]:
    """The recorded config (this warehouse) and the input pins of the run to replay."""
    tables = ArrowTables(cfg)
    row = recorded_run(tables, args["run_id"])
    data = as_recorded(json.loads(row["config_json"]))
    data["project"]["warehouse"] = cfg.project.warehouse
    recorded = validate(data)
    pins = input_pins(row)
    check_inputs(tables, pins)
    return recorded, pins


def environment_now(cfg: Config) -> dict[str, str]:
    """This machine's side of what a run records (the embedding model hashed as it resolves now)."""
    from issuerisk.encoding.models import model_identity

    now = dict(machine())
    try:
        now["embed_model"] = model_identity(cfg.embed.model, cfg.embed.model_path)
    except Exception as exc:  # noqa: BLE001 (a model that no longer resolves is itself the difference to report)
        now["embed_model"] = f"{cfg.embed.model}@unavailable ({type(exc).__name__})"
    now["embed_backend"] = cfg.embed.backend
    return now


def environment_differences(
    recorded: dict[str, Any], packages_now: dict[str, str], runtime_now: dict[str, str]
) -> list[tuple[str, str, str]]:
    """(what, recorded, now) for every tracked package and runtime fact that differs; facts only one side knows are
    skipped."""
    out = []
    was = dict(recorded["packages"] or {})
    for name in sorted(set(was) | set(packages_now)):
        if was.get(name) != packages_now.get(name):
            out.append((f"package {name}", was.get(name) or "absent", packages_now.get(name) or "absent"))
    runtime = dict(recorded["runtime"] or {})
    for key in RUNTIME_KEYS:
        if key in runtime and key in runtime_now and runtime[key] != runtime_now[key]:
            out.append((key, runtime[key], runtime_now[key]))
    return out


def compare_answers(
    clusters_a: pd.DataFrame, clusters_b: pd.DataFrame, risk_a: pd.DataFrame, risk_b: pd.DataFrame
) -> dict[str, Any]:
    """How a replay's labels and grades differ from the original's.

    Returns:
        issues (in either run), label_differences (issue missing on one side or in another cluster), ari,
        grades (rows in either gold_risk), grade_differences, and the differing rows themselves.
    """
    from sklearn.metrics import adjusted_rand_score

    key = ["repository", "number"]
    labels = clusters_a[key + ["cluster"]].merge(
        clusters_b[key + ["cluster"]], on=key, how="outer", suffixes=("_original", "_replay")
    )
    moved = labels[labels["cluster_original"].ne(labels["cluster_replay"]) | labels.isna().any(axis=1)]
    both = labels.dropna()
    ari = float(adjusted_rand_score(both["cluster_original"], both["cluster_replay"])) if len(both) else None
    rkey = ["scope", "cluster"]
    cols = rkey + ["grade", "n"]
    grades = risk_a[cols].merge(risk_b[cols], on=rkey, how="outer", suffixes=("_original", "_replay"))
    regraded = grades[
        grades["grade_original"].fillna("-").ne(grades["grade_replay"].fillna("-"))
        | grades["n_original"].ne(grades["n_replay"])
    ]
    return {
        "issues": len(labels),
        "label_differences": len(moved),
        "ari": ari,
        "grades": len(grades),
        "grade_differences": len(regraded),
        "moved": moved,
        "regraded": regraded,
    }


def replay(ctx: Context, run_id: str) -> dict[str, Any]:
    """Re-run ``run_id``'s clustering stages on its pinned inputs into this run, then compare the answers.

    Returns:
        The comparison's counts and ``identical`` (labels and grades equal), ``within_tolerance``.
    """
    tables = ctx.lake.arrow
    row = recorded_run(tables, run_id)
    differences = environment_differences(row, package_versions(), {**environment_now(ctx.cfg), **ctx.run.runtime})
    table(
        f"environment: recorded by {run_id} vs now",
        ["what", "recorded", "now"],
        differences or [["(nothing differs)", "", ""]],
    )
    pins = tables.pins
    console.print("inputs read as recorded: " + ", ".join(f"{t}@v{v}" for t, v in pins.items()))
    ctx.run.runtime["replay_of"] = run_id
    args = {"run_id": ctx.run.run_id}
    for stage in replayed_stages(row["command"]):
        console.rule(f"[bold]{stage.name}")
        execute(stage, ctx, args)
        ctx.run.save("running")
    result = compare_answers(
        *(run_rows(tables, GOLD_CLUSTERS, r, ["repository", "number", "cluster"]) for r in (run_id, ctx.run.run_id)),
        *(run_rows(tables, GOLD_RISK, r, ["scope", "cluster", "grade", "n"]) for r in (run_id, ctx.run.run_id)),
    )
    moved, regraded = result.pop("moved"), result.pop("regraded")
    if len(moved):
        table(
            f"{len(moved):,} issue(s) labelled differently (first 20)",
            list(moved.columns),
            moved.head(20).astype(str).values.tolist(),
        )
    if len(regraded):
        table(f"{len(regraded):,} grade(s) differ", list(regraded.columns), regraded.astype(str).values.tolist())
    identical = result["label_differences"] == 0 and result["grade_differences"] == 0
    backend = json.loads(row["metrics_json"] or "{}").get("cluster", {}).get("backend")
    inexact = backend == "cuml"
    within = identical or (inexact and result["ari"] is not None and result["ari"] >= ctx.cfg.cluster.replay_min_ari)
    verdict = (
        "identical labels and grades"
        if identical
        else f"within tolerance for a cuML clustering (ARI {result['ari']:.3f} >= cluster.replay_min_ari "
        f"{ctx.cfg.cluster.replay_min_ari})"
        if within
        else f"DIFFERENT: {result['label_differences']:,} label(s), {result['grade_differences']:,} grade(s) differ "
        f"(ARI {result['ari']})"
    )
    console.print(f"replay {ctx.run.run_id} of {run_id}: {verdict}")
    return {
        **result,
        "replay_of": run_id,
        "identical": identical,
        "within_tolerance": within,
        "environment_differences": [list(d) for d in differences],
        "pins": pins,
    }


REPLAY = Stage(
    "replay",
    "Re-run a recorded run on its inputs as they were (time travel), with its config and seeds; compare labels and "
    "grades",
    replay,
    options=(Option(("run_id",), "the run to replay (see `issuerisk runs`)"),),
    configure=configure,
)
