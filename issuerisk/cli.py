"""``issuerisk``: the command line over every stage.

Each subcommand opens a :class:`jobs.runs.Run` (one row in ``runs``), builds a
:class:`issuerisk.context.Context` and calls its stage's ``run(ctx, **options)``;
the stage returns its counts, which land in the run's metrics. Errors end the
command with exit code 1, a one-line message saying what to do, and a failed
run row; nothing is half-written because every write is a MERGE.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from typing import Any

from conf import ConfigError, load_config

FRAMEWORKS = ("pytorch", "tensorflow", "keras")

# command -> (module with run(ctx, **options), help)
COMMANDS: dict[str, tuple[str, str]] = {
    "ingest": ("jobs.ingest", "MERGE GitHub issue objects (JSON Lines / JSON arrays, gzip too) into bronze_issues"),
    "filter": ("jobs.filter", "Build silver_issues from bronze: drop PRs, bots, non-English, duplicates, tutorial/UI repos"),
    "summarize": ("jobs.summarize", "Summarize silver issues into silver_summaries (cached)"),
    "embed": ("ray_tasks.embed", "Embed summaries in Ray actors into gold_embeddings (incremental)"),
    "cluster": ("ray_tasks.cluster", "StandardScaler -> UMAP -> HDBSCAN into gold_clusters"),
    "topics": ("jobs.topics", "BERTopic keywords and representative issues per cluster into gold_topics"),
    "risk": ("jobs.risk", "Risk matrix per cluster, per framework and overall, into gold_risk"),
    "compare": ("jobs.compare", "Cross-framework comparison (shares, chi-square residuals, grades)"),
    "report": ("jobs.report", "Self-contained HTML report of a run"),
    "discover": ("jobs.discover", "Search GitHub for framework repositories into bronze_repos"),
    "crawl": ("jobs.crawl", "Crawl all issues of selected repositories, resumable, then ingest them"),
    "run": ("issuerisk.pipeline", "Run every stage from ingest to report"),
    "sql": ("issuerisk.queries", "Run Spark SQL on the Delta tables"),
    "tables": ("issuerisk.queries", "List the tables with row counts and Delta versions"),
}


def _add_run_id(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_id", nargs="?", help="run to use (default: the latest)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="issuerisk", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="YAML config (default: $ISSUERISK_CONFIG or conf/default.yaml)")
    parser.add_argument("--warehouse", help="warehouse folder or URI (overrides $ISSUERISK_WAREHOUSE)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = {name: sub.add_parser(name, help=text, description=text) for name, (_, text) in COMMANDS.items()}

    for name in ("ingest", "run"):
        p[name].add_argument("paths", nargs="+", metavar="PATH", help="files or folders of issue objects (.json, .jsonl, .gz)")
        p[name].add_argument("--framework", choices=FRAMEWORKS, help="tag every issue with this framework (default: infer per repository)")
    p["run"].add_argument("--sample", type=int, help="keep this many silver issues (seeded sample) for a quick run")
    p["run"].add_argument("--summarizer", choices=("extractive", "llm"))
    p["run"].add_argument("--embed-backend", choices=("transformer", "static"))
    p["run"].add_argument("--cluster-backend", choices=("auto", "cpu", "cuml"))
    p["summarize"].add_argument("--summarizer", choices=("extractive", "llm"), help="override summarize.summarizer")
    p["summarize"].add_argument("--limit", type=int, help="summarize at most this many issues")
    p["embed"].add_argument("--backend", choices=("transformer", "static"), help="override embed.backend")
    p["cluster"].add_argument("--backend", choices=("auto", "cpu", "cuml"), help="override cluster.backend")
    p["cluster"].add_argument("--unseeded", action="store_true", help="multi-threaded UMAP: faster, not bit-repeatable")
    for name in ("topics", "risk", "compare"):
        _add_run_id(p[name])
    _add_run_id(p["report"])
    p["report"].add_argument("--out", help="HTML file to write (default: <reports_dir>/<run_id>.html)")
    p["discover"].add_argument("--framework", choices=(*FRAMEWORKS, "all"), default="all")
    p["discover"].add_argument("--min-stars", type=int)
    p["discover"].add_argument("--created-from", help="YYYY-MM-DD")
    p["discover"].add_argument("--created-to", help="YYYY-MM-DD")
    p["crawl"].add_argument("--repo", action="append", dest="repos", metavar="OWNER/NAME", help="crawl this repository (repeatable); default: selected bronze_repos")
    p["crawl"].add_argument("--framework", choices=FRAMEWORKS, help="tag for --repo repositories")
    p["crawl"].add_argument("--no-ingest", action="store_true", help="only fetch raw JSON Lines, do not MERGE into bronze_issues")
    p["crawl"].add_argument("--max-repos", type=int)
    p["sql"].add_argument("query", help='e.g. "SELECT framework, count(*) FROM issuerisk.silver_issues GROUP BY 1"')
    p["sql"].add_argument("--format", choices=("table", "csv", "json"), default="table")
    p["sql"].add_argument("--limit", type=int, default=1000, help="rows to print at most")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``issuerisk`` command."""
    args = build_parser().parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.warehouse:
        os.environ["ISSUERISK_WAREHOUSE"] = args.warehouse
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"issuerisk: {exc}", file=sys.stderr)
        return 2

    from issuerisk.context import Context
    from jobs.runs import Run

    options: dict[str, Any] = {k: v for k, v in vars(args).items() if k not in ("config", "warehouse", "no_progress", "command")}
    run = Run(cfg, args.command, args=options)
    ctx = Context(cfg=cfg, run=run, progress=not args.no_progress)
    module = importlib.import_module(COMMANDS[args.command][0])
    entry = getattr(module, args.command) if args.command in ("sql", "tables") else module.run
    run.save("running")
    try:
        result = entry(ctx, **options)
    except KeyboardInterrupt:
        run.save("failed", "interrupted")
        print("issuerisk: interrupted; rerun the same command to resume (writes are idempotent MERGEs)", file=sys.stderr)
        return 130
    except Exception as exc:
        run.save("failed", f"{type(exc).__name__}: {exc}")
        print(f"issuerisk {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        if os.environ.get("ISSUERISK_DEBUG"):
            raise
        print("  (set ISSUERISK_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1
    if isinstance(result, dict):
        run.stage(args.command, **{k: v for k, v in result.items() if _jsonable(v)})
    run.save("succeeded")
    print(f"run {run.run_id} succeeded; manifest: SELECT * FROM {cfg.project.database}.runs WHERE run_id = '{run.run_id}'", file=sys.stderr)
    return 0


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
