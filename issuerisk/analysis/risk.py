"""Stage ``risk``: the reference risk matrix for the defect patterns of one clustering run, with how sure each grade is.

Per cluster and scope (all frameworks, and each framework alone) the stage
decides first whether the cluster is graded at all, and records why not:

1. ``risk.exclude_clusters`` / ``risk.include_clusters`` force a cluster out or in (by id, or by a word of
   its name, label or keywords);
2. a cluster whose defect share (issue kinds from ``silver_issue_kinds``) is under ``risk.min_defect_share``
   is not a defect pattern ("not a defect pattern: 82 % feature requests");
3. a cluster whose bootstrap stability is under ``risk.min_stability`` has dissolved;
3b. a catch-all is too broad: at least ``risk.max_generic_share`` of its top c-TF-IDF words are generic, not
   ``topics.generic_lift`` times as common in it as in the run's other issues, or naming a framework or failing as
   such (one framework's failures of many kinds; measured by the topics stage,
   :func:`issuerisk.clustering.quality.breadth`);
4. a cluster seen in fewer than ``risk.min_repositories`` repositories of the scope, or with more than
   ``risk.max_repository_share`` of its issues from one, is project-specific, not a framework risk. A scope
   whose issues come from fewer repositories than that (a team analysing its own one or two) cannot hold a
   cross-project pattern: there the rule is off, and the run's counts and the report say so.

The graded clusters then get :func:`issuerisk.grading.matrix.assess` (``P_k`` over the graded
clusters' issues; impact from ``risk.impact_measure``, open issues censored at the corpus's snapshot
time) and a seeded bootstrap of the whole matrix (:mod:`issuerisk.grading.confidence`). The run's
``gold_risk`` rows are replaced, excluded clusters included with their reason.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from issuerisk.conf.settings import RiskConfig
from issuerisk.constants import FRAMEWORKS, NOISE
from issuerisk.context import Context
from issuerisk.display import console, table
from issuerisk.gold import clustering_run, optional_float, resolve_run_id, run_issues, run_rows, run_table
from issuerisk.grading.confidence import ClusterSample, bootstrap, rank_correlation
from issuerisk.grading.matrix import assess, severity
from issuerisk.grading.survival import censored_durations
from issuerisk.schemas.gold import GOLD_CLUSTERS, GOLD_RISK, GOLD_TOPICS
from issuerisk.schemas.silver import SILVER_ISSUE_KINDS, SILVER_ISSUES
from issuerisk.stage import RUN_ID, Stage

TOPIC_COLUMNS = ("cluster", "label", "name", "keywords")
BREADTH_COLUMNS = ("spread", "generic_share", "generic_keywords")
KIND_WORDS = {
    "feature": "feature requests",
    "question": "questions",
    "documentation": "documentation issues",
    "other": "other issues",
}


@dataclass(frozen=True)
class ClusterFacts:
    """What decides whether a cluster is graded, in one scope."""

    n: int
    defect_share: float | None
    label_defect_share: float | None
    kind_mix: dict[str, float]
    repositories: int
    top_repository: str
    top_repository_share: float
    stability: float | None


def scopes(issues: pd.DataFrame) -> list[str]:
    """``all`` and every framework among pytorch/tensorflow/keras that has clustered issues."""
    present = set(issues["framework"])
    return ["all", *(f for f in FRAMEWORKS if f in present)]


def cluster_facts(group: pd.DataFrame) -> ClusterFacts:
    """Kind mix, repository spread and stability of one cluster's issues (columns kind, label_kind, repository,
    stability)."""
    kinds = group["kind"].dropna()
    mix = {k: round(float(v), 4) for k, v in kinds.value_counts(normalize=True).sort_index().items()}
    labelled = group["label_kind"].dropna()
    repos = group["repository"].value_counts()
    stability = group["stability"].dropna()
    return ClusterFacts(
        n=len(group),
        defect_share=float((kinds == "defect").mean()) if len(kinds) else None,
        label_defect_share=float((labelled == "defect").mean()) if len(labelled) else None,
        kind_mix=mix,
        repositories=int(len(repos)),
        top_repository=str(repos.index[0]),
        top_repository_share=float(repos.iloc[0] / len(group)),
        stability=float(stability.iloc[0]) if len(stability) else None,
    )


def _matches(cluster: int, words: Sequence[int | str], text: str) -> str | None:
    for w in words:
        if isinstance(w, int) or str(w).isdigit():
            if int(w) == cluster:
                return f"id {cluster}"
        elif re.search(rf"\b{re.escape(str(w).lower())}\b", text):
            return f"'{w}'"
    return None


@dataclass(frozen=True)
class Broadness:
    """What the topics stage measured of a cluster's breadth (:class:`issuerisk.clustering.quality.Breadth`); None
    for runs whose topics predate it."""

    spread: float | None = None
    generic_share: float | None = None
    generic_keywords: tuple[str, ...] = ()

    def too_broad(self, rules: RiskConfig) -> str | None:
        """Why the cluster is a catch-all (most of its words do not set it apart), or None."""
        if self.generic_share is None or self.generic_share < rules.max_generic_share:
            return None
        spread = "" if self.spread is None else f"; its issues spread {self.spread:.2f}x the median cluster's"
        return (
            f"too broad: {self.generic_share:.0%} of its top words by c-TF-IDF "
            f"({', '.join(self.generic_keywords[:5])}) name a framework or failing as such, or are not "
            f"twice as common in it as in the run's other issues (topics.generic_lift){spread}: a catch-all, not one "
            "failure; read its representative issues for the failures inside it"
        )


def exclusion(
    cluster: int,
    text: str,
    overall: ClusterFacts,
    scoped: ClusterFacts,
    rules: RiskConfig,
    broadness: Broadness = Broadness(),
) -> str | None:
    """Why a cluster is not graded in a scope, or None when it is.

    ``overall`` (the cluster in all frameworks) decides the kind, stability and breadth rules, ``scoped`` the
    repository rules; ``text`` is the cluster's name, label and keywords for the forced lists.
    """
    forced_out = _matches(cluster, rules.exclude_clusters, text)
    if forced_out:
        return f"forced out by risk.exclude_clusters ({forced_out})"
    if _matches(cluster, rules.include_clusters, text):
        return None
    if overall.defect_share is not None and overall.defect_share < rules.min_defect_share:
        kind, share = max(
            ((k, v) for k, v in overall.kind_mix.items() if k != "defect"), key=lambda kv: kv[1], default=("other", 1.0)
        )
        return (
            f"not a defect pattern: {share:.0%} {KIND_WORDS.get(kind, kind)} (defect share "
            f"{overall.defect_share:.0%} < {rules.min_defect_share:.0%})"
        )
    if overall.stability is not None and overall.stability < rules.min_stability:
        return (
            f"unstable: bootstrap Jaccard {overall.stability:.2f} < {rules.min_stability:.2f} (the cluster "
            "dissolves when the data are resampled)"
        )
    if broad := broadness.too_broad(rules):
        return broad
    if scoped.repositories < rules.min_repositories:
        return (
            f"project-specific: {scoped.repositories} repositor{'y' if scoped.repositories == 1 else 'ies'} (< "
            f"{rules.min_repositories}), mostly {scoped.top_repository}"
        )
    if scoped.top_repository_share > rules.max_repository_share:
        return (
            f"project-specific: {scoped.top_repository_share:.0%} of its issues from {scoped.top_repository} (> "
            f"{rules.max_repository_share:.0%})"
        )
    return None


def severity_check(
    issues: pd.DataFrame, graded: Sequence[Mapping[str, Any]], pattern: str, seed: int
) -> dict[str, Any]:
    """The grade order of the graded patterns against the share of their issues that maintainers labelled severe or
    urgent (``pattern``, matched in full on lower-case label names): Spearman's rho with a bootstrap interval, or why
    there is none. A signal of harm the grade does not use; it can disagree, and is reported whatever it is."""
    severe_label = re.compile(pattern)
    severe = issues["labels"].map(
        lambda labels: any(severe_label.fullmatch(str(x).lower()) for x in (labels if labels is not None else []))
    )
    share = severe.groupby(issues["cluster"]).mean()
    order = [severity(r["grade"]) for r in graded]
    shares = [float(share.get(r["cluster"], 0.0)) for r in graded]
    out: dict[str, Any] = {"patterns": len(graded), "severe_issues": int(severe.sum()), "rho": None}
    if len(graded) < 3 or np.ptp(order) == 0 or np.ptp(shares) == 0:
        out["why"] = "fewer than 3 graded patterns, one grade, or no pattern with a severe label"
        return out
    rho, low, high = rank_correlation(order, shares, seed=seed)
    return {**out, "rho": round(rho, 3), "low": round(low, 3), "high": round(high, 3)}


def repository_rules(rules: RiskConfig, repositories: int) -> tuple[RiskConfig, str | None]:
    """The rules for a scope whose issues come from ``repositories`` repositories, and why they differ from
    ``rules``: under ``risk.min_repositories`` no cluster can recur across projects, so the cross-project rule is
    off."""
    if repositories >= rules.min_repositories:
        return rules, None
    note = (
        f"cross-project rule off: the input holds {repositories} repositor{'y' if repositories == 1 else 'ies'} "
        f"(< risk.min_repositories={rules.min_repositories}), so its patterns are graded as the project's own"
    )
    return rules.model_copy(update={"min_repositories": 1, "max_repository_share": 1.0}), note


def open_hours(created: pd.Series, snapshot: pd.Timestamp) -> np.ndarray:
    """Hours each issue has been open at the snapshot (what an open issue is censored at)."""
    return ((snapshot - pd.to_datetime(created, utc=True)).dt.total_seconds() / 3600.0).clip(lower=0).to_numpy()


def scope_rows(
    run_id: str,
    scope: str,
    issues: pd.DataFrame,
    decisions: Mapping[int, str | None],
    facts: Mapping[int, ClusterFacts],
    labels: Mapping[int, str],
    rules: RiskConfig,
    seed: int,
    snapshot: pd.Timestamp,
) -> list[dict[str, Any]]:
    """``gold_risk`` rows of one scope: graded clusters with their bootstrap, then the excluded ones with their
    reason."""
    horizon = rules.impact_horizon_days * 24.0
    excluded = [c for c, reason in decisions.items() if reason]
    graded = assess(issues, excluded, rules.impact_measure, horizon)
    samples = []
    for r in graded:
        group = issues[issues["cluster"] == r.cluster]
        durations, events = censored_durations(
            group["resolution_hours"].to_numpy(float),
            group["is_closed"].to_numpy(bool),
            group["open_hours"].to_numpy(float),
        )
        samples.append(ClusterSample(r.cluster, durations, events))
    confidence = bootstrap(
        samples, {r.cluster: r.grade for r in graded}, rules.impact_measure, horizon, rules.bootstrap_rounds, seed
    )
    rows = []
    for r in graded:
        c = confidence[r.cluster]
        rows.append(
            {
                **r.to_dict(),
                **_facts(facts[r.cluster]),
                "impact_measure": rules.impact_measure,
                "impact_low": c.impact_low,
                "impact_high": c.impact_high,
                "p_k_low": c.p_k_low,
                "p_k_high": c.p_k_high,
                "grade_confidence": c.grade_confidence,
                "grade_shares": list(c.grade_shares.items()),
            }
        )
    for cluster in excluded:
        group = issues[issues["cluster"] == cluster]
        closed = group.loc[group["is_closed"].astype(bool), "resolution_hours"]
        rows.append(
            {
                "cluster": cluster,
                "n": len(group),
                "open_share": 1.0 - len(closed) / len(group),
                "mttr_hours": float(closed.mean()) if len(closed) else None,
                "median_ttr_hours": float(closed.median()) if len(closed) else None,
                **_facts(facts[cluster]),
                "excluded_reason": decisions[cluster],
            }
        )
    return [
        {
            **row,
            "run_id": run_id,
            "scope": scope,
            "label": labels.get(row["cluster"]),
            "snapshot_at": snapshot.to_pydatetime(),
        }
        for row in rows
    ]


def _facts(f: ClusterFacts) -> dict[str, Any]:
    return {
        "defect_share": f.defect_share,
        "label_defect_share": f.label_defect_share,
        "kind_mix": list(f.kind_mix.items()),
        "repositories": f.repositories,
        "top_repository": f.top_repository,
        "top_repository_share": f.top_repository_share,
        "stability": f.stability,
    }


def with_kinds(issues: pd.DataFrame, kinds: pd.DataFrame) -> pd.DataFrame:
    """The issues with ``kind`` (label or predicted) and ``label_kind`` (only where the issue's own labels decide)."""
    kinds = kinds.assign(label_kind=kinds["kind"].where(kinds["source"] == "label"))[
        ["repository", "number", "kind", "label_kind"]
    ]
    return issues.merge(kinds, on=["repository", "number"], how="left")


def run(ctx: Context, run_id: str | None = None) -> dict[str, Any]:
    """Grade the defect patterns of one clustering run (default: the latest).

    The first grading of a clustering run writes its ``gold_risk`` rows under that run's id. A later one (another
    config, say) never rewrites them: it writes derived rows under this command's own run id, each naming the
    clustering run it grades (``derived_from``), so the clustering run's report and manifest stay as they were and
    ``issuerisk report <this run>`` shows the new grades beside the config that made them.

    Raises:
        NoClusteringError: no clustering run, or the given one has no rows.
        issuerisk.grading.matrix.RiskInputError: a cluster's resolution times are invalid.
    """
    tables, rules = ctx.lake.arrow, ctx.cfg.risk
    base = clustering_run(tables, resolve_run_id(tables, run_id))
    graded_before = (
        base != ctx.run.run_id and tables.read(GOLD_RISK, columns=["run_id"], where={"run_id": base}).num_rows
    )
    run_id, derived_from = (ctx.run.run_id, base) if graded_before else (base, None)
    if derived_from:
        console.print(
            f"risk: run {base} is graded already; these grades go under this command's run id {run_id} "
            f"(derived_from {base}), and {base}'s rows stay as they were"
        )
    issues, missing = run_issues(tables, base)
    snapshot = pd.Timestamp(tables.read(SILVER_ISSUES, columns=["updated_at"]).column("updated_at").to_pandas().max())
    issues = with_kinds(
        issues, tables.read(SILVER_ISSUE_KINDS, columns=["repository", "number", "kind", "source"]).to_pandas()
    )
    issues = issues[issues["cluster"] != NOISE].assign(open_hours=lambda f: open_hours(f["created_at"], snapshot))
    topics = run_rows(tables, GOLD_TOPICS, base).reindex(columns=[*TOPIC_COLUMNS, *BREADTH_COLUMNS])
    labels = dict(zip(topics["cluster"].astype(int), topics["label"]))
    texts = {
        int(c): " ".join([str(n or ""), str(lab or ""), *list(k if k is not None else [])]).lower()
        for c, n, lab, k in zip(topics["cluster"], topics["name"], topics["label"], topics["keywords"])
    }
    broadness = {
        int(row.cluster): Broadness(
            optional_float(row.spread),
            optional_float(row.generic_share),
            tuple(row.generic_keywords if row.generic_keywords is not None else ()),
        )
        for row in topics.itertuples()
    }
    overall = {int(c): cluster_facts(g) for c, g in issues.groupby("cluster")}
    rows, decisions, notes = [], {}, {}
    for scope in scopes(issues):
        in_scope = issues if scope == "all" else issues[issues["framework"] == scope]
        facts = {int(c): cluster_facts(g) for c, g in in_scope.groupby("cluster")}
        scope_rules, note = repository_rules(rules, int(in_scope["repository"].nunique()))
        if note:
            notes[scope] = note
            console.print(f"risk ({scope}): {note}")
        decisions[scope] = {
            c: exclusion(c, texts.get(c, ""), overall[c], facts[c], scope_rules, broadness.get(c, Broadness()))
            for c in facts
        }
        rows += scope_rows(
            run_id, scope, in_scope, decisions[scope], facts, labels, scope_rules, ctx.cfg.project.seed, snapshot
        )
    for row in rows:
        row["derived_from"] = derived_from
    tables.merge(GOLD_RISK, run_table(GOLD_RISK, rows), how="replace_run", run_id=run_id)
    graded = sorted(
        (r for r in rows if r["scope"] == "all" and r.get("grade")), key=lambda r: (-severity(r["grade"]), -r["n"])
    )
    table(
        f"Top risks of run {run_id} (all frameworks; {rules.impact_measure} impact)",
        ["cluster", "label", "n", "P_k", "impact h", "grade", "confidence", "defect", "repos"],
        [
            (
                r["cluster"],
                r["label"] or "",
                r["n"],
                r["p_k"],
                r["impact_hours"],
                r["grade"],
                r["grade_confidence"],
                r["defect_share"],
                r["repositories"],
            )
            for r in graded[:10]
        ],
    )
    check = severity_check(issues, graded, rules.severity_labels, ctx.cfg.project.seed)
    excluded = [
        (r["cluster"], r["label"] or "", r["n"], r["excluded_reason"])
        for r in rows
        if r["scope"] == "all" and r.get("excluded_reason")
    ]
    if excluded:
        table("Not graded (all frameworks)", ["cluster", "label", "n", "why"], excluded[:20])
    return {
        "run_id": run_id,
        "rows": len(rows),
        "snapshot_at": str(snapshot),
        "graded": {scope: sum(1 for r in decided.values() if r is None) for scope, decided in decisions.items()},
        "excluded": {scope: sum(1 for r in decided.values() if r) for scope, decided in decisions.items()},
        "missing_from_silver": missing,
        "rule_notes": notes,
        "severity_check": check,
        "derived_from": derived_from,
    }


STAGE = Stage(
    "risk",
    "Grade the defect patterns (risk matrix per cluster, per framework and overall) into gold_risk",
    run,
    reads=(GOLD_CLUSTERS.name, SILVER_ISSUES.name, GOLD_TOPICS.name, SILVER_ISSUE_KINDS.name),
    writes=(GOLD_RISK.name,),
    options=(RUN_ID,),
    sections=("risk",),
)
