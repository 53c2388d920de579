"""Is the answer valid? Breadth, names, kinds, human defect areas and severity, beside BERTopic's default.

    .venv/bin/python -m bench.validity [--subset small|large|all] [--warehouse DIR] [--reuse-bertopic]

On one of bench.pipeline's subsets of the REAL corpus (default *small*: every 25th repository, the repositories kept
out of every choice of thresholds and label maps), it runs ``issuerisk run`` cold into a fresh warehouse (or reads a
finished run of the same files from ``--warehouse``) and BERTopic's defaults on the same issues, then prints:

1. **Breadth**: the graded top 10 (name, keywords, category, repositories, defect share by the classifier and by the
   issues' own labels) and the clusters excluded as too broad.
2. **Names and keywords**: NPMI and diversity of the top-10 keywords, counted over the issues' full texts (title and
   body) and, for ours, over the summaries that were embedded; BERTopic's on the same full texts.
3. **Kinds**: the classifier's repository-grouped macro-F1 and its check on the input's own labels (the manifest).
4. **Agreement with a human's defect area**: the labels of the corpus that name an area rather than a kind
   (:data:`AREA_PATTERNS`, matched on the real spellings), NMI and purity of our clusters and of BERTopic's topics
   against them on the issues with exactly one area, noise counted as one group on both sides.
5. **Severity signals the grade does not use**: per graded pattern the share of issues labelled with a priority or
   severity (:data:`SEVERE_PATTERN`), the share reopened (``state_reason``), comments and reactions per issue; the
   Spearman rank correlation of grade order with each, with a 95 % bootstrap interval over patterns.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from pathlib import Path

import numpy as np

from bench.pipeline import bertopic, ours, subsets, warehouse_tables
from bench.stability import OUT, REAL_ISSUES, label_names, read_repository
from issuerisk.conf.settings import SEVERITY_LABEL_PATTERN
from issuerisk.grading.confidence import rank_correlation

AREA_PATTERNS = {
    "installation and "
    "environment": r"^(installation|install|dependencies|topic: dependencies|area/build|build|ci / build"
    r"|docker|area/docker|docker-compose|area/windows|windows|os/windows|macos|platform:linux|python3|colab|pkg)$",
    "documentation and examples": r"^(documentation|docs?|area/docs|topic: documentation|update readme|move-to-docs"
    r"|tutorial|examples?|area/examples|topic: examples)$",
    "gpu and parallelism": r"^(gpu|cuda|topic: parallelism)$",
    "performance": r"^(performance|optimization|speed)$",
    "data loading": r"^(module:datasets&loaders|data|topic: data|ingest|data layout|kind/sources|kind/dataflow)$",
    "model export and serving": r"^(converter|custom converter|new converter|area/model-registry|area/artifacts"
    r"|area/scoring|http_service|model-release|integrations/.*)$",
    "user interface": r"^(area/uiux|ui|gui|front-end|frontend-ui|ux/ui|ui/ux|component:gui|ux)$",
    "tests and ci": r"^(tests|testing|ci|continuous-integration|kind/ci/failing|module:tests|kind/testing)$",
}
"""Labels that name an area of the software rather than a kind of issue, by their real spellings in the corpus
(lower case). Chosen from the whole corpus's label list before any figure below was computed."""
SEVERE_PATTERN = f"^({SEVERITY_LABEL_PATTERN})$"
"""Labels that mark an issue as severe or urgent (the risk stage's default ``risk.severity_labels``)."""


def area_of(labels: list[str]) -> str | None:
    """The one area an issue's labels name, or None (no area, or two different ones)."""
    found = {area for area, pattern in AREA_PATTERNS.items() for lab in labels if re.match(pattern, lab.lower())}
    return found.pop() if len(found) == 1 else None


def signals(files: list[Path]) -> dict[tuple[str, int], dict]:
    """Per issue: its area, whether it is labelled severe, reopened, its comments and reactions, and its full text."""
    out = {}
    for f in files:
        repository, objects = read_repository(f)
        for o in objects:
            labels = label_names(o)
            out[(repository, o["number"])] = {
                "area": area_of(labels),
                "severe": any(re.match(SEVERE_PATTERN, lab.lower()) for lab in labels),
                "reopened": o.get("state_reason") == "reopened",
                "comments": float(o.get("comments") or 0),
                "reactions": float((o.get("reactions") or {}).get("total_count") or 0),
                "text": (o.get("title") or "") + "\n" + (o.get("body") or ""),
            }
    return out


def area_agreement(labels: dict, issues: dict, keys: set) -> tuple[float, float, int]:
    """NMI and purity of a clustering against the areas, on ``keys`` with exactly one area; noise is one group."""
    from sklearn.metrics import normalized_mutual_info_score

    pairs = [(labels[k], issues[k]["area"]) for k in sorted(keys) if issues[k]["area"]]
    if not pairs:
        return float("nan"), float("nan"), 0
    clusters, areas = zip(*pairs)
    groups: dict[int, list[str]] = {}
    for c, a in pairs:
        groups.setdefault(c, []).append(a)
    purity = sum(max(g.count(a) for a in set(g)) for g in groups.values()) / len(pairs)
    return float(normalized_mutual_info_score(clusters, areas)), purity, len(pairs)


def run_tables(warehouse: Path) -> dict:
    """The finished ``run`` of a warehouse: its gold rows, labels and manifest metrics."""
    from issuerisk.schemas.gold import GOLD_CLUSTERS, GOLD_QUALITY, GOLD_RISK, GOLD_TOPICS
    from issuerisk.schemas.ledger import RUNS

    tables = warehouse_tables(warehouse)
    row = max(
        (r for r in tables.read(RUNS).to_pylist() if r["command"] == "run" and r["status"] == "succeeded"),
        key=lambda r: r["run_id"],
    )
    where = {"run_id": row["run_id"]}
    clusters = tables.read(GOLD_CLUSTERS, where=where).to_pylist()
    return {
        "run_id": row["run_id"],
        "metrics": json.loads(row["metrics_json"]),
        "labels": {(r["repository"], r["number"]): r["cluster"] for r in clusters},
        "topics": {r["cluster"]: r for r in tables.read(GOLD_TOPICS, where=where).to_pylist()},
        "risk": [r for r in tables.read(GOLD_RISK, where=where).to_pylist() if r["scope"] == "all"],
        "quality": {r["measure"]: r["value"] for r in tables.read(GOLD_QUALITY, where=where).to_pylist()},
    }


def main(argv: list[str] | None = None) -> None:
    from issuerisk.clustering.quality import Presence, diversity, npmi
    from issuerisk.display import table
    from issuerisk.grading.matrix import severity

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--subset", default="small", choices=("small", "large", "all"))
    p.add_argument(
        "--warehouse", type=Path, help="a warehouse holding a finished `issuerisk run` of the subset's files"
    )
    p.add_argument(
        "--reuse-bertopic",
        action="store_true",
        help="take BERTopic's default from its last run on the same files (bench/out, as bench.pipeline keeps it)",
    )
    args = p.parse_args(argv)
    files = sorted(REAL_ISSUES.glob("*.jsonl.gz"))
    files = files if args.subset == "all" else subsets()[args.subset]
    issues = signals(files)
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=OUT) as tmp:
        work = Path(tmp)
        warehouse = args.warehouse
        if warehouse is None:
            ours(files, work)
            warehouse = work / "warehouse"
        run = run_tables(warehouse)
        theirs = bertopic(files, work, args.reuse_bertopic)
    both = set(run["labels"]) & set(theirs["labels"]) & set(issues)
    print(
        f"{args.subset}: {len(issues):,} issues of {len(files)} repositories; run {run['run_id']}; {len(both):,} "
        "clustered by both",
        flush=True,
    )

    graded = sorted((r for r in run["risk"] if r["grade"]), key=lambda r: (-severity(r["grade"]), -r["n"]))
    topics = run["topics"]
    table(
        "1. graded top 10 (all frameworks)",
        ["cluster", "name", "grade", "n", "keywords", "category", "repos", "defect (classifier)", "defect (labels)"],
        [
            (
                r["cluster"],
                topics[r["cluster"]]["name"],
                r["grade"],
                r["n"],
                ", ".join(topics[r["cluster"]]["keywords"][:5]),
                topics[r["cluster"]]["category"],
                r["repositories"],
                f"{r['defect_share']:.2f}" if r["defect_share"] is not None else "",
                f"{r['label_defect_share']:.2f}" if r["label_defect_share"] is not None else "",
            )
            for r in graded[:10]
        ],
    )
    broad = [r for r in run["risk"] if (r["excluded_reason"] or "").startswith("too broad")]
    table(
        "1. excluded as too broad",
        ["cluster", "name", "n", "why"],
        [(r["cluster"], topics[r["cluster"]]["name"], r["n"], r["excluded_reason"]) for r in broad]
        or [("-", "none", 0, "")],
    )

    ours_keywords = [t["keywords"] for t in topics.values()]
    full = Presence([issues[k]["text"] for k in sorted(both)])
    table(
        "2. keyword coherence (NPMI) and diversity of the top 10 keywords",
        ["side", "NPMI full texts", "NPMI embedded summaries", "diversity", "topics"],
        [
            (
                "issuerisk",
                f"{npmi(ours_keywords, full):.3f}",
                f"{run['quality'].get('npmi') or float('nan'):.3f}",
                f"{diversity(ours_keywords):.3f}",
                len(ours_keywords),
            ),
            (
                "BERTopic default",
                f"{npmi(theirs['keywords'], full):.3f}",
                "",
                f"{diversity(theirs['keywords']):.3f}",
                len(theirs["keywords"]),
            ),
        ],
    )

    classify = run["metrics"].get("classify") or {}
    model = classify.get("model") or {}
    check = model.get("input_check") or {}
    llm = classify.get("llm") or {}
    llm_check = llm.get("label_check") or {}
    table(
        "3. issue kinds (the run's manifest; macro-F1 over defect/feature/question)",
        ["model", "trained on", "grouped cross-validation", "on the input's own labels"],
        [
            (
                classify.get("model_id", ""),
                model.get("source", "input labels"),
                (classify.get("evaluation") or {}).get("macro_f1_core", ""),
                check.get("macro_f1_core", "not checked (it learned from the input's own labels)"),
            )
        ]
        + (
            [
                (
                    llm["model_id"],
                    "(an LLM, kinds.method llm)",
                    "",
                    f"{llm_check['macro_f1_core']} on {llm_check['issues']} issues" if llm_check else "not checked",
                )
            ]
            if llm
            else []
        ),
    )

    rows = []
    for side, labels in (("issuerisk", run["labels"]), ("BERTopic default", theirs["labels"])):
        nmi, purity, n = area_agreement(labels, issues, both)
        rows.append((side, f"{nmi:.3f}", f"{purity:.3f}", n))
    table("4. agreement with the labelled defect area (noise one group)", ["side", "NMI", "purity", "issues"], rows)

    members: dict[int, list] = {}
    for key, cluster in run["labels"].items():
        if key in issues:
            members.setdefault(cluster, []).append(issues[key])
    order, measured = (
        [],
        {"severe label share": [], "reopened share": [], "comments / issue": [], "reactions / issue": []},
    )
    for r in graded:
        group = members.get(r["cluster"], [])
        if not group:
            continue
        order.append(severity(r["grade"]))
        measured["severe label share"].append(np.mean([g["severe"] for g in group]))
        measured["reopened share"].append(np.mean([g["reopened"] for g in group]))
        measured["comments / issue"].append(np.mean([g["comments"] for g in group]))
        measured["reactions / issue"].append(np.mean([g["reactions"] for g in group]))
    rows = []
    for signal, values in measured.items():
        if len(order) >= 3 and np.ptp(order) > 0 and np.ptp(values) > 0:
            rho, low, high = rank_correlation(order, values)
            rows.append((signal, len(order), f"{rho:+.2f}", f"[{low:+.2f}, {high:+.2f}]"))
        else:
            rows.append((signal, len(order), "n/a", "too few graded patterns or no variation"))
    table(
        "5. grade order against severity signals the grade does not use (Spearman, graded patterns)",
        ["signal", "patterns", "rho", "95% bootstrap"],
        rows,
    )


if __name__ == "__main__":
    main()
