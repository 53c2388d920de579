"""Command ``tune``: Optuna (seeded TPE) over the clustering parameters, on the precomputed embeddings.

Each trial clusters the current vectors with a consensus of a few seeded member
runs (``--runs``, 3 by default: cheap, yet enough to see which settings hold
still) and scores it. The objective, higher is better::

    objective = DBCV + mean cluster stability (bootstrap Jaccard)     if noise share <= --max-noise
    (pruned)                                                            otherwise

DBCV (density-based validity, -1..1) rewards dense, separated clusters;
stability (0..1) rewards clusters the member runs agree on; the noise limit
keeps a trial from buying both by calling most issues noise. Trials go to
``gold_tuning``; the best parameters are printed and, with ``--write-config``,
written as a config file's ``cluster`` section; an HTML page shows the trials,
the best point and the parameters' importances (fANOVA).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import yaml

from issuerisk.context import Context
from issuerisk.display import table
from issuerisk.schemas.gold import GOLD_EMBEDDINGS, GOLD_TUNING
from issuerisk.schemas.silver import SILVER_ISSUES, SILVER_PROJECT_TERMS, SILVER_SUMMARIES
from issuerisk.stage import Option, Stage
from issuerisk.vectors import load_current_vectors

SPACE = {
    "n_neighbors": (5, 50),
    "n_components": (2, 15),
    "min_dist": (0.0, 0.3),
    "min_cluster_size": (5, 60),
    "min_samples": (1, 30),
    "cluster_selection_method": ("eom", "leaf"),
}


def suggest(trial) -> dict[str, Any]:
    """One point of :data:`SPACE`."""
    return {
        "n_neighbors": trial.suggest_int("n_neighbors", *SPACE["n_neighbors"]),
        "n_components": trial.suggest_int("n_components", *SPACE["n_components"]),
        "min_dist": trial.suggest_float("min_dist", *SPACE["min_dist"]),
        "min_cluster_size": trial.suggest_int("min_cluster_size", *SPACE["min_cluster_size"]),
        "min_samples": trial.suggest_int("min_samples", *SPACE["min_samples"]),
        "cluster_selection_method": trial.suggest_categorical(
            "cluster_selection_method", SPACE["cluster_selection_method"]
        ),
    }


def score(vectors: np.ndarray, params, runs: int, seed: int) -> dict[str, float | None]:
    """DBCV, mean stability, noise share and clusters of a small consensus with ``params`` (in this process, on the
    configured backend: cuML where ``cluster.backend`` picks it, as the cluster stage would)."""
    from issuerisk.clustering.backends import get_backend, member_run
    from issuerisk.clustering.consensus import dbcv
    from issuerisk.clustering.consensus import fit as consensus_fit

    params = params.model_copy(update={"consensus_runs": runs})
    backend = get_backend(params.backend)
    prepared = backend.prepare(vectors, params)
    members, labels, _, stability, _ = consensus_fit(
        lambda seeds, selections: [
            member_run(backend, prepared, params, s, selections, i == 0) for i, s in enumerate(seeds)
        ],
        prepared,
        params,
        seed,
    )
    return {
        "dbcv": dbcv(members[0]["reduced"], labels, params.dbcv_sample, seed),
        "stability": float(np.nanmean(stability)) if len(stability) else None,
        "noise_share": float(np.mean(labels < 0)),
        "clusters": int(labels.max() + 1),
    }


def tune(
    ctx,
    trials: int = 20,
    timeout: float = 600.0,
    runs: int = 3,
    max_noise: float = 0.3,
    write_config: str | None = None,
) -> dict[str, Any]:
    """Search the clustering parameters; write every trial to ``gold_tuning`` and the best to a config file when asked.

    Raises:
        issuerisk.vectors.NoVectorsError: nothing embedded yet.
        ValueError: bad budgets.
    """
    import optuna

    if trials < 1 or timeout <= 0 or runs < 2 or not 0 < max_noise <= 1:
        raise ValueError(
            f"need --trials >= 1, --timeout > 0, --runs >= 2 and 0 < --max-noise <= 1; got {trials}, {timeout}, "
            f"{runs}, {max_noise}"
        )
    cfg, tables = ctx.cfg, ctx.lake.arrow
    _, vectors = load_current_vectors(tables, cfg)
    seed = cfg.project.seed
    ctx.run.seeds["tune"] = seed
    rows: list[dict[str, Any]] = []

    def objective(trial) -> float:
        params = cfg.cluster.model_copy(
            update={**suggest(trial), "member_selection": trial.params["cluster_selection_method"]}
        )
        t0 = time.perf_counter()
        try:
            got = score(vectors, params, runs, seed)
        except ValueError as exc:  # too few points for the neighbourhood or the smallest cluster
            rows.append(
                {
                    "trial": trial.number,
                    "params": trial.params,
                    "state": "failed",
                    "seconds": time.perf_counter() - t0,
                    "detail": str(exc),
                }
            )
            raise optuna.TrialPruned(str(exc)) from None
        state = "complete" if got["noise_share"] <= max_noise and got["dbcv"] is not None else "pruned"
        value = (got["dbcv"] or 0.0) + (got["stability"] or 0.0) if state == "complete" else None
        rows.append(
            {
                "trial": trial.number,
                "params": trial.params,
                "objective": value,
                "state": state,
                "seconds": time.perf_counter() - t0,
                **got,
            }
        )
        if value is None:
            raise optuna.TrialPruned(f"noise share {got['noise_share']:.2f} > {max_noise}")
        return value

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=trials, timeout=timeout)
    tables.merge(
        GOLD_TUNING,
        pa.Table.from_pylist(
            [
                {
                    "run_id": ctx.run.run_id,
                    "trial": r["trial"],
                    "params": [(k, str(v)) for k, v in r["params"].items()],
                    "objective": r.get("objective"),
                    "dbcv": r.get("dbcv"),
                    "stability": r.get("stability"),
                    "noise_share": r.get("noise_share"),
                    "clusters": r.get("clusters"),
                    "seconds": round(r["seconds"], 2),
                    "state": r["state"],
                }
                for r in rows
            ],
            schema=GOLD_TUNING.arrow,
        ),
    )
    complete = [r for r in rows if r["state"] == "complete"]
    if not complete:
        raise ValueError(
            f"no trial kept the noise share under {max_noise} in {len(rows)} trials; raise --max-noise or --trials"
        )
    best = max(complete, key=lambda r: r["objective"])
    importances = importance(study)
    table(
        f"tune: {len(rows)} trials ({len(complete)} complete) on {len(vectors):,} issues; objective = DBCV + "
        f"stability, noise <= {max_noise}",
        ["trial", "objective", "DBCV", "stability", "noise", "clusters", *SPACE],
        [
            (
                r["trial"],
                r["objective"],
                r["dbcv"],
                r["stability"],
                r["noise_share"],
                r["clusters"],
                *(r["params"].get(k) for k in SPACE),
            )
            for r in sorted(complete, key=lambda r: -r["objective"])[:10]
        ],
    )
    if write_config:
        Path(write_config).write_text(
            yaml.safe_dump(
                {"cluster": {**best["params"], "member_selection": best["params"]["cluster_selection_method"]}},
                sort_keys=True,
            )
        )
    page = write_page(ctx, rows, best, importances, max_noise)
    return {
        "trials": len(rows),
        "complete": len(complete),
        "best_trial": best["trial"],
        "best_objective": round(best["objective"], 4),
        "best_params": best["params"],
        "importances": importances,
        "config_written": write_config,
        "page": str(page),
    }


def importance(study) -> dict[str, float]:
    """Parameter importances (Optuna's fANOVA evaluator); empty when too few trials completed."""
    import optuna

    try:
        return {k: round(v, 4) for k, v in optuna.importance.get_param_importances(study).items()}
    except (RuntimeError, ValueError):
        return {}


def write_page(ctx: Context, rows: list[dict], best: dict, importances: dict[str, float], max_noise: float) -> Path:
    """The trials, the best point and the importances as one self-contained HTML page next to the reports."""
    from issuerisk.html import render_page

    path = Path(ctx.cfg.resolve_path(ctx.cfg.project.reports_dir)) / f"tune-{ctx.run.run_id}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        render_page(
            "tune.html.j2",
            run_id=ctx.run.run_id,
            rows=rows,
            best=best,
            importances=importances,
            space=list(SPACE),
            max_noise=max_noise,
        ),
        encoding="utf-8",
    )
    return path


TUNE = Stage(
    "tune",
    "Search UMAP and HDBSCAN parameters (Optuna, seeded TPE) on the current embeddings into gold_tuning",
    tune,
    reads=(GOLD_EMBEDDINGS.name, SILVER_SUMMARIES.name, SILVER_ISSUES.name, SILVER_PROJECT_TERMS.name),
    writes=(GOLD_TUNING.name,),
    options=(
        Option(("--trials",), "trials at most", argparse={"type": int, "default": 20}),
        Option(("--timeout",), "seconds at most", argparse={"type": float, "default": 600.0}),
        Option(("--runs",), "member runs per trial's consensus", argparse={"type": int, "default": 3}),
        Option(
            ("--max-noise",), "a trial with a larger noise share is pruned", argparse={"type": float, "default": 0.3}
        ),
        Option(("--write-config",), "write the best parameters as a config file's cluster section"),
    ),
)
