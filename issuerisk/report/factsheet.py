"""Stage ``factsheet``: one page per run, in the manner of AI FactSheets and model cards, plus the run told step by
step.

The factsheet says what the run is for, what data it used (sources, counts,
table versions, the profile's warnings), which models and parameters (with the
embedding model's weight hash), how good the clustering is, how risk was
graded, what came out, what the answer cannot tell, and the exact command that
replays it. The narrative is built from the ledger alone: for each stage, what
it read (table@version), what it did with which parameters, what it wrote,
how many rows, how long, and what it excluded and why.

It is written beside the run's report as ``<run_id>.factsheet.html`` (self-
contained, loads nothing) and ``<run_id>.factsheet.json`` (the same content).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from issuerisk.context import Context
from issuerisk.display import console
from issuerisk.gold import clustering_run, profile_source, resolve_run_id, run_records
from issuerisk.grading.matrix import GRADES, LIKELIHOOD_BANDS, severity
from issuerisk.html import factsheet_name, render_page
from issuerisk.schemas.gold import GOLD_CLUSTERS, GOLD_PROFILE, GOLD_QUALITY, GOLD_RISK, GOLD_TOPICS
from issuerisk.schemas.ledger import RUNS
from issuerisk.stage import RUN_ID, Stage

PURPOSE = (
    "Find the recurring defect patterns in GitHub issues of projects built on PyTorch, TensorFlow and Keras and grade "
    "each on a "
    "quantitative risk matrix, so that a team adopting one of these frameworks knows its high-risk areas before it "
    "starts."
)
STATIC_LIMITATIONS = (
    "Issues are what users chose to report on GitHub: silent failures, and projects that track bugs elsewhere, are "
    "missing.",
    "Time to resolve measures how long an issue stayed open, not the effort or harm of the fault; open issues are "
    "censored at the data's snapshot.",
    "A pattern's grade holds for the repositories crawled; the likelihood is a share of their issues, not a "
    "probability of failure in a new project.",
    "Issue kinds come from GitHub labels where present, else from a classifier evaluated on repositories it never saw "
    "(or an LLM, kinds.method llm); their errors move clusters in or out of grading.",
    "Clusters are made on summaries of the issues; what a summary leaves out cannot shape a pattern.",
)


def _steering(config: Mapping[str, Any], sections: Sequence[str]) -> dict[str, Any]:
    """The config keys of ``sections`` as flat ``section.key`` pairs (long lists and maps abbreviated)."""
    out: dict[str, Any] = {}
    for section in sections:
        for key, value in (config.get(section) or {}).items():
            if isinstance(value, (dict, list)) and len(json.dumps(value, default=str)) > 120:
                value = f"({len(value)} entries)"
            out[f"{section}.{key}"] = value
    return out


def _versions(versions: Mapping[str, int] | None) -> str:
    return ", ".join(f"{t}@v{v}" for t, v in sorted((versions or {}).items())) or "nothing"


def excluded_text(name: str, metrics: Mapping[str, Any], risk_rows: Sequence[Mapping[str, Any]]) -> str | None:
    """What a stage left out and why, from its counts (and, for ``risk``, the not-graded clusters' reasons)."""
    if name == "ingest" and metrics.get("rejected"):
        reasons = ", ".join(
            f"{k} {v:,}" for k, v in sorted((metrics.get("rejects_by_reason") or {}).items(), key=lambda kv: -kv[1])
        )
        return f"rejected {metrics['rejected']:,} malformed records into bronze_rejects ({reasons})"
    if name == "filter" and metrics.get("excluded"):
        excluded = metrics["excluded"]
        return f"excluded {sum(excluded.values()):,} issues into silver_excluded: " + ", ".join(
            f"{k} {v:,}" for k, v in sorted(excluded.items(), key=lambda kv: -kv[1])
        )
    if name == "summarize" and metrics.get("failed"):
        return (
            f"{metrics['failed']:,} issues could not be summarized ({metrics.get('failed_by_reason')}) and went to "
            "silver_summary_failures"
        )
    if name == "embed" and metrics.get("failed"):
        return f"{metrics['failed']:,} texts could not be embedded and went to embed_failures"
    if name == "cluster" and metrics.get("noise_share") is not None:
        return (
            f"left {100 * metrics['noise_share']:.1f} % of {metrics.get('issues', 0):,} issues as noise (in no pattern)"
        )
    if name == "risk":
        reasons = Counter(
            str(r["excluded_reason"]).split(":")[0].split(" (")[0]
            for r in risk_rows
            if r["scope"] == "all" and r.get("excluded_reason")
        )
        if reasons:
            return f"did not grade {sum(reasons.values())} clusters: " + "; ".join(
                f"{k} ({v})" for k, v in reasons.most_common()
            )
    if name in ("profile", "drift") and metrics.get("warned"):
        return "warned: " + ", ".join(metrics["warned"])
    return None


def _counts(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """A stage's plain counts (no table versions, no long structures)."""
    skip = {
        "tables_read",
        "tables_written",
        "stage_seconds",
        "cpu_cores_busy",
        "did",
        "config_sections",
        "step",
        "run_id",
        "top_risks",
        "cluster_stability",
        "evaluation",
    }
    return {
        k: v
        for k, v in metrics.items()
        if k not in skip and not (isinstance(v, (list, dict)) and len(json.dumps(v, default=str)) > 160)
    }


def narrative(row: Mapping[str, Any], risk_rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The run told stage by stage from its ledger row alone: read, did (with parameters), wrote, rows, seconds,
    excluded.

    Each stage's metrics hold what :func:`issuerisk.stage.execute` recorded: its description (``did``), the config
    sections that steer it, the tables it read and wrote with their versions, its counts and its wall time.
    """
    metrics = json.loads(row.get("metrics_json") or "{}")
    config = json.loads(row.get("config_json") or "{}")
    staged = [(name, m) for name, m in metrics.items() if isinstance(m, dict) and "did" in m]
    if len(staged) > 1:  # a command that ran stages (run, replay) is told through them
        staged = [(name, m) for name, m in staged if name != row["command"]]
    staged.sort(key=lambda item: item[1].get("step", 0))
    return [
        {
            "stage": name,
            "did": m["did"],
            "read": _versions(m.get("tables_read")),
            "wrote": _versions(m.get("tables_written")),
            "parameters": _steering(config, m.get("config_sections") or ()),
            "counts": _counts(m),
            "seconds": m.get("stage_seconds"),
            "excluded": excluded_text(name, m, risk_rows),
        }
        for name, m in staged
    ]


def build_factsheet(
    row: Mapping[str, Any],
    profile: Sequence[Mapping[str, Any]],
    quality: Sequence[Mapping[str, Any]],
    risk_rows: Sequence[Mapping[str, Any]],
    topics: Sequence[Mapping[str, Any]],
    warehouse: str,
) -> dict[str, Any]:
    """Everything the factsheet says, as plain data (the JSON file and the page's view)."""
    metrics = json.loads(row.get("metrics_json") or "{}")
    config = json.loads(row.get("config_json") or "{}")
    runtime, packages = dict(row.get("runtime") or {}), dict(row.get("packages") or {})
    names = {t["cluster"]: t.get("name") or t.get("label") for t in topics}
    graded = sorted(
        (r for r in risk_rows if r["scope"] == "all" and r.get("grade")), key=lambda r: (-severity(r["grade"]), -r["n"])
    )
    doubtful = [
        r
        for r in graded
        if r.get("grade_confidence") is not None
        and r["grade_confidence"] < config.get("risk", {}).get("min_grade_confidence", 0.8)
    ]
    warnings = [f"{p['check']} ({p['scope']}): {p['message']}" for p in profile if p["warning"]]
    classifier = (metrics.get("classify") or {}).get("evaluation") or {}
    quality_values = {q["measure"]: q["value"] for q in quality}
    limitations = list(STATIC_LIMITATIONS)
    kinds_model = (metrics.get("classify") or {}).get("model") or {}
    if classifier.get("macro_f1_core") is not None:
        learned = (
            f" It learned from the reference corpus ({classifier.get('labelled_issues')} labelled issues of "
            f"{classifier.get('labelled_repositories')} other repositories), because the input's labels cover too few "
            "repositories"
            if kinds_model.get("source") == "reference corpus"
            else ""
        )
        check = kinds_model.get("input_check") or {}
        checked = (
            f"; on the input's own {check['issues']} labelled issues it reaches {check['macro_f1_core']:.2f}"
            if check
            else ""
        )
        limitations.append(
            f"The issue-kind classifier reaches macro-F1 {classifier['macro_f1_core']:.2f} (defect/feature/question) "
            "on repositories "
            f"it never saw{checked}; a defect share near the 0.5 line is uncertain.{learned}"
        )
    llm = (metrics.get("classify") or {}).get("llm") or {}
    if llm:
        agreement = llm.get("label_check") or {}
        limitations.append(
            f"Unlabelled issues' kinds come from an LLM ({llm['model_id']}; the classifier's kind where it gave none: "
            f"{llm.get('failed_by_reason') or 'none'})"
            + (
                f"; on {agreement['issues']} labelled issues of the input, labels hidden, it reaches macro-F1 "
                f"{agreement['macro_f1_core']:.2f} (the classifier, on repositories it never saw: "
                f"{llm.get('classifier_macro_f1_core') or float('nan'):.2f})"
                if agreement
                else "; it was not checked against labels"
            )
            + "."
        )
    for scope, note in sorted(((metrics.get("risk") or {}).get("rule_notes") or {}).items()):
        limitations.append(
            f"Grading ({scope}): {note}; such a pattern is a risk of these projects, not evidence about the framework."
        )
    check = (metrics.get("risk") or {}).get("severity_check") or {}
    if check.get("rho") is not None:
        limitations.append(
            f"Checked against a harm signal the grade does not use: over the {check['patterns']} graded patterns, "
            f"grade order and the share of issues maintainers labelled severe or urgent (risk.severity_labels; "
            f"{check['severe_issues']} such issues) correlate at Spearman {check['rho']:+.2f} (95 % bootstrap "
            f"{check['low']:+.2f} to {check['high']:+.2f}); bench.validity adds reopened share, comments and reactions."
        )
    elif check:
        limitations.append(
            f"The grade order could not be checked against severity labels: {check.get('why')} "
            f"({check.get('severe_issues', 0)} issues labelled severe or urgent)."
        )
    if doubtful:
        limitations.append(
            f"{len(doubtful)} of {len(graded)} grades have bootstrap confidence under "
            f"{100 * config.get('risk', {}).get('min_grade_confidence', 0.8):.0f} %: the grade could be a neighbour on "
            "resampling."
        )
    if warnings:
        limitations.append(
            f"The data profile raised {len(warnings)} warning(s) (listed under Data); read them before trusting a "
            "framework-level reading."
        )
    if (metrics.get("summarize") or {}).get("summarizer") == "extractive":
        limitations.append(
            "Summaries are extractive (rules, no LLM): a summary is the issue's own lines that name the failure, not a "
            "rewrite."
        )
    if runtime.get("cluster_backend") == "cuml":
        limitations.append(
            "The clustering ran on a GPU (cuML), which is not bit-repeatable: a replay agrees within "
            "cluster.replay_min_ari, not exactly."
        )
    filt = metrics.get("filter") or {}
    return {
        "run_id": row["run_id"],
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "purpose": PURPOSE,
        "data": {
            "sources": (json.loads(row.get("args_json") or "{}").get("paths") or []),
            "counts": {
                "bronze": filt.get("bronze"),
                "silver": filt.get("silver"),
                "excluded": filt.get("excluded"),
                "silver_by_framework": filt.get("silver_by_framework"),
                "sample_size": config.get("project", {}).get("sample_size"),
                "clustered": (metrics.get("cluster") or {}).get("issues"),
            },
            "tables_read": dict(row.get("tables_read") or {}),
            "tables_written": dict(row.get("tables_written") or {}),
            "profile_warnings": warnings,
        },
        "models": {
            "summarizer": {
                k: (metrics.get("summarize") or {}).get(k) for k in ("summarizer", "model", "prompt_version")
            },
            "embedding": {
                "model": runtime.get("embed_model") or config.get("embed", {}).get("model"),
                "device": runtime.get("embed_device"),
                "query_prefix": config.get("embed", {}).get("query_prefix"),
                "max_seq_length": config.get("embed", {}).get("max_seq_length"),
            },
            "issue_kinds": {
                **{
                    k: classifier.get(k)
                    for k in ("macro_f1_core", "macro_f1_all", "labelled_issues", "labelled_repositories")
                },
                **{k: kinds_model.get(k) for k in ("model_id", "source", "reference_corpus", "input_check")},
                "llm": {k: llm.get(k) for k in ("model_id", "asked", "answered", "failed_by_reason", "label_check")}
                if llm
                else None,
            },
            "clustering": {**_steering(config, ("cluster",)), "backend": runtime.get("cluster_backend")},
            "topics": _steering(config, ("topics",)),
            "seeds": dict(row.get("seeds") or {}),
        },
        "quality": quality_values,
        "risk_method": {
            "likelihood": "P_k = n_k / N over the graded clusters' issues; bands "
            + ", ".join(
                f"{band} < {100 * upper:g} %" if upper != float("inf") else f"{band} otherwise"
                for band, upper in LIKELIHOOD_BANDS
            ),
            "impact": (
                "Kaplan-Meier restricted mean time to resolve (horizon "
                f"{config.get('risk', {}).get('impact_horizon_days')} d, open issues censored)"
                if config.get("risk", {}).get("impact_measure") == "rmst"
                else "mean time to resolve of closed issues"
            )
            + "; tertiles I1 <= q33 < I2 <= q66 < I3 over the graded clusters",
            "grades": {band: list(cells) for band, cells in GRADES.items()},
            "confidence": f"share of {config.get('risk', {}).get('bootstrap_rounds')} seeded bootstrap resamplings "
            "giving the same grade",
            "graded_only": "defect patterns: defect share >= {min_defect_share}, >= {min_repositories} repositories, "
            "none above {max_repository_share} "
            "of the issues, stability >= {min_stability}".format(
                **{
                    k: config.get("risk", {}).get(k)
                    for k in ("min_defect_share", "min_repositories", "max_repository_share", "min_stability")
                }
            ),
        },
        "results": {
            "graded": len(graded),
            "not_graded": sum(1 for r in risk_rows if r["scope"] == "all" and r.get("excluded_reason")),
            "top": [
                {
                    "cluster": r["cluster"],
                    "name": names.get(r["cluster"]) or r.get("label"),
                    "grade": r["grade"],
                    "n": r["n"],
                    "confidence": r.get("grade_confidence"),
                    "action": r.get("action"),
                }
                for r in graded[:10]
            ],
        },
        "limitations": limitations,
        "replay": f"issuerisk --warehouse {warehouse} replay {row['run_id']}",
        "environment": {
            "git_commit": row.get("git_commit"),
            "config_hash": row.get("config_hash"),
            "packages": packages,
            "runtime": {k: v for k, v in runtime.items() if k not in ("pid", "pid_start", "heartbeat")},
        },
        "narrative": narrative(row, risk_rows),
    }


def run(ctx: Context, run_id: str | None = None) -> dict[str, Any]:
    """Write the factsheet (HTML and JSON) of one run (default: the latest clustering) beside its report."""
    tables = ctx.lake.arrow
    run_id = resolve_run_id(tables, run_id)
    if run_id == ctx.run.run_id:
        ctx.run.save("running")  # the ledger row holds every stage before this one
    rows = run_records(tables, RUNS, run_id)
    if not rows:
        raise LookupError(f"run {run_id!r} has no row in runs; list runs with `issuerisk runs`")
    base = clustering_run(tables, run_id)
    if base != run_id:  # a later grading: the data and models are its clustering run's, the risk section its own
        clustered = run_records(tables, RUNS, base)
        if clustered:
            merged = json.loads(clustered[0].get("metrics_json") or "{}") | json.loads(
                rows[0].get("metrics_json") or "{}"
            )
            rows = [{**clustered[0], **rows[0], "metrics_json": json.dumps(merged)}]
    source = profile_source(tables, run_id)
    sheet = build_factsheet(
        rows[0],
        run_records(tables, GOLD_PROFILE, source) if source else [],
        run_records(tables, GOLD_QUALITY, run_id),
        run_records(tables, GOLD_RISK, run_id),
        run_records(tables, GOLD_TOPICS, run_id),
        ctx.cfg.project.warehouse,
    )
    folder = Path(ctx.cfg.resolve_path(ctx.cfg.project.reports_dir)).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    page = folder / factsheet_name(run_id)
    page.write_text(render_page("factsheet.html.j2", sheet=sheet, report=f"{run_id}.html"), encoding="utf-8")
    page.with_suffix(".json").write_text(json.dumps(sheet, indent=2, default=str), encoding="utf-8")
    console.print(f"Factsheet of run {run_id}: {page} (and {page.with_suffix('.json').name})")
    return {
        "run_id": run_id,
        "factsheet": str(page),
        "steps": len(sheet["narrative"]),
        "limitations": len(sheet["limitations"]),
    }


STAGE = Stage(
    "factsheet",
    "Factsheet of a run (purpose, data, models, quality, risk method, results, limitations, replay) and its "
    "step-by-step narrative",
    run,
    reads=(RUNS.name, GOLD_CLUSTERS.name, GOLD_PROFILE.name, GOLD_QUALITY.name, GOLD_RISK.name, GOLD_TOPICS.name),
    options=(RUN_ID,),
)
