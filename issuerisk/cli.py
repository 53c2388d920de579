"""``issuerisk``: the command line over every stage.

Subcommands come from the stage registry (plus ``run``, ``sql`` and ``tables``).
The final, validated config is built once, from the file, the environment and
the command's flags; then the command opens a :class:`issuerisk.ledger.Run`
(one row in ``runs``, recording exactly that config), builds a
:class:`issuerisk.context.Context` and executes its stage, whose counts land in
the run's metrics. Errors end the command with exit code 1, a one-line message
saying what to do, and a failed run row; nothing is half-written because every
write is a MERGE.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from issuerisk.conf import ConfigError, load_config

GLOBAL = ("config", "warehouse", "no_progress", "command")


def commands() -> dict[str, Any]:
    """Every command by name: the registered stages, then ``run``, ``sql`` and ``tables``."""
    from issuerisk.pipeline import RUN
    from issuerisk.queries import SQL, TABLES_COMMAND
    from issuerisk.stages import REGISTRY

    return {**REGISTRY, RUN.name: RUN, SQL.name: SQL, TABLES_COMMAND.name: TABLES_COMMAND}


def build_parser(known: dict[str, Any]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="issuerisk", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="YAML config (default: $ISSUERISK_CONFIG or conf/default.yaml)")
    parser.add_argument("--warehouse", help="warehouse folder or URI (overrides $ISSUERISK_WAREHOUSE)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, stage in known.items():
        p = sub.add_parser(name, help=stage.help, description=stage.help)
        for option in stage.options:
            p.add_argument(*option.flags, help=option.help, **option.argparse)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``issuerisk`` command."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    known = commands()
    args = build_parser(known).parse_args(argv)
    stage = known[args.command]
    values = {k: v for k, v in vars(args).items() if k not in GLOBAL}
    overrides = stage.overrides(values)
    if args.warehouse:
        overrides["project.warehouse"] = args.warehouse
    try:
        cfg = load_config(args.config, overrides=overrides)
    except ConfigError as exc:
        print(f"issuerisk: {exc}", file=sys.stderr)
        return 2

    from issuerisk.context import Context
    from issuerisk.ledger import Run
    from issuerisk.stage import execute

    run = Run(cfg, args.command, args=values)
    ctx = Context.open(cfg, run, progress=not args.no_progress)
    ctx.invoke = lambda name, **kw: execute(known[name], ctx, kw)
    run.save("running")
    try:
        execute(stage, ctx, values)
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
    run.save("succeeded")
    print(f"run {run.run_id} succeeded; manifest: SELECT * FROM {cfg.project.database}.runs WHERE run_id = '{run.run_id}'", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
