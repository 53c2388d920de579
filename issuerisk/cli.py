"""``issuerisk``: the command line over every stage.

Subcommands come from the stage registry (plus ``run``, ``sql`` and ``tables``).
The final, validated config is built once, from the file, the environment and
the command's flags; then the command opens a :class:`issuerisk.ledger.Run`
(one row in ``runs``, recording exactly that config), builds a
:class:`issuerisk.context.Context` and executes its stage, whose counts land in
the run's metrics. Errors end the command with exit code 1, a one-line message
saying what to do, and a failed run row; nothing is half-written because every
write is a MERGE. SIGTERM and SIGHUP end a command like Ctrl-C (the run row says
which signal), and every command first marks the ``running`` rows of commands
that were killed outright (SIGKILL, power loss) as ``abandoned``. A command that
succeeds exits 0, or with the status its stage returns as ``exit_status``
(``watch``: 3 when an alert fired).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import traceback
from typing import Any

from issuerisk.conf import ConfigError, load_config
from issuerisk.conf.secrets import RedactingFilter, env_secrets, redact

GLOBAL = ("config", "warehouse", "no_progress", "command")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _children() -> list[int]:
    """Pids of this process's direct children (the Spark JVM, a local Ray's head processes), from ``/proc``."""
    me, kids = str(os.getpid()), []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    if f.read().rsplit(b")", 1)[1].split()[1].decode() == me:
                        kids.append(int(entry))
            except (OSError, IndexError):
                continue
    return kids


def stop_children(grace_s: float = 5.0) -> None:
    """SIGTERM this process's children, then SIGKILL those still alive after ``grace_s``.

    A command stopped while Spark starts would otherwise leave its JVM behind for good:
    py4j's gateway thread keeps it alive once PySpark's launcher is gone.
    """
    import time

    kids = _children()
    for pid in kids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while kids and time.monotonic() < deadline:
        kids = [pid for pid in kids if os.path.exists(f"/proc/{pid}") and not _zombie(pid)]
        time.sleep(0.1)
    for pid in kids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except OSError:
        return True


def _say(message: str) -> None:
    """Print to stderr with every secret of the environment redacted."""
    print(redact(message, env_secrets(os.environ)), file=sys.stderr)


def _redact_logs() -> None:
    """Log records (the crawler's warnings, urllib3's) leave through one stderr handler that redacts secrets."""
    handler = logging.StreamHandler()
    handler.addFilter(RedactingFilter(env_secrets(os.environ)))
    logging.basicConfig(level=logging.WARNING, format="%(message)s", handlers=[handler])


def commands() -> dict[str, Any]:
    """Every command by name: the registered stages, then ``run``, ``replay``, ``sql``, ``tables``, ``runs``, ``diff``,
    ``tune`` and ``serve``."""
    from issuerisk.analysis.diff import DIFF
    from issuerisk.analysis.tune import TUNE
    from issuerisk.pipeline import RUN
    from issuerisk.queries import RUNS_COMMAND, SQL, TABLES_COMMAND
    from issuerisk.replay import REPLAY
    from issuerisk.serve import SERVE
    from issuerisk.stages import REGISTRY

    return {
        **REGISTRY,
        RUN.name: RUN,
        **{c.name: c for c in (REPLAY, SQL, TABLES_COMMAND, RUNS_COMMAND, DIFF, TUNE, SERVE)},
    }


def build_parser(known: dict[str, Any]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="issuerisk", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="YAML config (default: $ISSUERISK_CONFIG or conf/default.yaml)")
    parser.add_argument("--warehouse", help="warehouse folder or URI (overrides $ISSUERISK_WAREHOUSE)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, stage in known.items():
        p = sub.add_parser(name, help=stage.help, description=stage.help)
        for option in stage.options:
            p.add_argument(*option.flags, help=option.help, **option.parser_arguments())
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``issuerisk`` command."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _redact_logs()
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
        _say(f"issuerisk: {exc}")
        return 2

    import pyarrow

    from issuerisk.context import Context
    from issuerisk.ledger import Run, mark_abandoned
    from issuerisk.stage import Stopped, execute, request_stop

    pins: dict[str, int] = {}
    if stage.configure is not None:
        try:
            cfg, pins = stage.configure(cfg, values)
        except (ConfigError, LookupError, ValueError) as exc:
            _say(f"issuerisk {args.command}: {exc}")
            return 2
    run = Run(cfg, args.command, args=values)
    ctx = Context.open(cfg, run, progress=not args.no_progress, pins=pins)
    ctx.stages = known
    ctx.invoke = lambda name, **kw: execute(known[name], ctx, kw)
    pyarrow.enable_signal_handlers(False)  # pyarrow's own handler, set around long reads, must not take our signals
    previous = {s: signal.signal(s, request_stop) for s in STOP_SIGNALS}
    try:
        run.save("running")
        abandoned = mark_abandoned(ctx.lake.arrow, cfg, run.run_id)
        if abandoned:
            _say(
                f"issuerisk: marked {len(abandoned)} run(s) whose process is gone as abandoned: {', '.join(abandoned)}"
            )
        run.start_heartbeat()
        result = execute(stage, ctx, values)
    except (KeyboardInterrupt, Stopped) as exc:
        name = exc.args[0] if isinstance(exc, Stopped) else "SIGINT"
        run.save("failed", f"interrupted by {name}")
        stop_children()
        _say(f"issuerisk: interrupted by {name}; rerun the same command to resume (writes are idempotent MERGEs)")
        return 128 + (exc.signum if isinstance(exc, Stopped) else signal.SIGINT)
    except Exception as exc:
        run.save("failed", f"{type(exc).__name__}: {exc}")
        stop_children()
        _say(f"issuerisk {args.command}: {type(exc).__name__}: {str(exc).strip()}")
        if os.environ.get("ISSUERISK_DEBUG"):
            _say(traceback.format_exc().rstrip())
        else:
            _say("  (set ISSUERISK_DEBUG=1 for the traceback)")
        return 1
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    run.save("succeeded")
    _say(
        f"run {run.run_id} succeeded; manifest: SELECT * FROM {cfg.project.database}.runs WHERE run_id = '{run.run_id}'"
    )
    return int(result.get("exit_status", 0))  # a command's own answer for a scheduler (watch: an alert fired)


if __name__ == "__main__":
    sys.exit(main())
