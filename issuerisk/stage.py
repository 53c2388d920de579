"""What a stage is: a name, what it reads and writes, its command-line options, and ``run(ctx, **args)``.

Every stage module declares one :class:`Stage` (``STAGE``); the registry
(:mod:`issuerisk.stages`) lists them, the CLI builds its subcommands from them
and the pipeline runs them in order. An :class:`Option` either sets a config key
(validated with the whole config before anything runs, so the run ledger records
exactly what ran) or is an argument of ``run``. :func:`execute` is the one place
that times a stage and records its counts in the run's metrics.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from issuerisk.conf.settings import literal_choices
from issuerisk.constants import FRAMEWORKS
from issuerisk.lakehouse.arrow_tables import STRICT_ENV, Contract
from issuerisk.silver import SILVER_NAMES, MixedSilverError, silver_build

if TYPE_CHECKING:  # the runner is typed by the context it gets, without importing the lakehouse at start-up
    from issuerisk.context import Context


class Stopped(BaseException):
    """The command was asked to stop by a signal (SIGTERM, SIGHUP); it ends like Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_STOPS: list[int] = []
"""The stop signals received by this process; a stop whose exception some library swallowed is raised again here."""


def request_stop(signum: int, frame: Any) -> None:
    """The handler of the stop signals: remember the signal, then raise :class:`Stopped` where the program is.

    Python runs a handler between bytecodes of whatever runs then; an exception raised inside a finalizer or a
    library's ``except Exception`` may be lost, so :func:`execute` raises it again before and after each stage.
    """
    _STOPS.append(signum)
    raise Stopped(signum)


def _stop_point() -> None:
    if _STOPS:
        raise Stopped(_STOPS[0])


@dataclass(frozen=True)
class Option:
    """One command-line option of a stage.

    Attributes:
        flags: ``("--backend",)`` or a positional name ``("paths",)``.
        help: one line for ``--help``.
        config_key: the dotted config key the value sets (``cluster.backend``); None passes it to ``run``.
        argparse: further ``add_argument`` keywords (``choices``, ``type``, ``nargs``, ``action``, ``dest``).
    """

    flags: tuple[str, ...]
    help: str
    config_key: str | None = None
    argparse: dict[str, Any] = field(default_factory=dict)

    def parser_arguments(self) -> dict[str, Any]:
        """``add_argument`` keywords: ``argparse``, with the config key's allowed values as ``choices`` when the key
        is a ``Literal`` (stated once, in ``conf/settings.py``)."""
        if self.config_key is None or "choices" in self.argparse:
            return dict(self.argparse)
        choices = literal_choices(self.config_key)
        return {**self.argparse, "choices": choices} if choices else dict(self.argparse)

    @property
    def dest(self) -> str:
        """The attribute argparse stores the value under."""
        return self.argparse.get("dest") or self.flags[0].lstrip("-").replace("-", "_")


@dataclass(frozen=True)
class Stage:
    """One step of the pipeline (or a command) and its contract.

    Attributes:
        reads: tables it reads (for the manifest's narrative and the docs).
        writes: tables it writes.
        run: ``run(ctx, **args)`` returning the stage's counts (plain, JSON-able values).
        sections: the config sections whose keys steer it (for the run's narrative and factsheet).
        configure: ``configure(cfg, args) -> (cfg, pins)``: the config the command runs under and the tables it
            reads at fixed Delta versions, from the config its flags built (``replay``: the recorded run's); None
            runs under the flags' config with nothing pinned.
        warm: ``warm(ctx)``, called by ``run`` once the engines are up: starts, without waiting, what the stage's
            ``run`` needs that takes seconds to get ready (actors loading a model) and leaves it in
            ``ctx.warmed[name]`` (an object with ``close()``), so it gets ready while earlier stages work.
    """

    name: str
    help: str
    run: Callable[..., dict[str, Any] | None]
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    options: tuple[Option, ...] = ()
    sections: tuple[str, ...] = ()
    configure: Callable[[Any, dict[str, Any]], tuple[Any, dict[str, int]]] | None = None
    warm: Callable[[Any], None] | None = None

    @property
    def arguments(self) -> tuple[str, ...]:
        """Names of the options that are arguments of ``run`` (not config keys)."""
        return tuple(o.dest for o in self.options if o.config_key is None)

    def overrides(self, values: dict[str, Any]) -> dict[str, Any]:
        """Config overrides (dotted key -> value) of the options given in ``values``."""
        return {o.config_key: values[o.dest] for o in self.options if o.config_key and values.get(o.dest) is not None}


class Preload:
    """A stage's ``warm`` that imports heavy modules in a daemon thread while earlier stages work (the import
    lock makes the stage's own import wait for it); an import error is left for the stage's own import to raise."""

    def __init__(self, *modules: str) -> None:
        self._thread = threading.Thread(target=self._load, args=(modules,), name="issuerisk-preload", daemon=True)
        self._thread.start()

    @staticmethod
    def _load(modules: tuple[str, ...]) -> None:
        for module in modules:
            try:
                importlib.import_module(module)
            except Exception:  # noqa: BLE001 (the stage imports it again and reports the error there)
                return

    def close(self) -> None:
        """Nothing to release (the thread ends by itself)."""


def preload(name: str, *modules: str) -> Callable[[Any], None]:
    """A ``warm`` for stage ``name`` that imports ``modules`` in the background (see :class:`Preload`)."""

    def warm(ctx: Context) -> None:
        ctx.warmed[name] = Preload(*modules)

    return warm


RUN_ID = Option(("run_id",), "run to use (default: the latest)", argparse={"nargs": "?"})
"""The optional positional run id of the stages that analyse one clustering run."""

PATHS = Option(
    ("paths",), "files or folders of issue objects (.json, .jsonl, .gz)", argparse={"nargs": "+", "metavar": "PATH"}
)
FRAMEWORK = Option(
    ("--framework",),
    "tag every issue with this framework (default: infer per repository)",
    argparse={"choices": FRAMEWORKS},
)


def jsonable(value: Any) -> bool:
    """Whether ``value`` can be stored in the run's metrics (JSON)."""
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def cpu_ticks() -> tuple[int, int] | None:
    """The machine's busy and total CPU ticks since boot (``/proc/stat``: all processes, Ray's and Spark's workers
    included), or None where there is no ``/proc``."""
    try:
        with open("/proc/stat") as fh:
            ticks = [int(v) for v in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    return sum(ticks) - idle, sum(ticks)


def cores_busy(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """How many of the machine's cores were busy on average between two :func:`cpu_ticks` samples."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return round((after[0] - before[0]) / (after[1] - before[1]) * (os.cpu_count() or 1), 2)


def execute(stage: Stage, ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """Run one stage with the arguments it takes from ``args``; record its counts, wall time and tables in the run's
    metrics, with the cores the machine kept busy meanwhile (``cpu_cores_busy``, every process on it).

    The stage's declared ``reads`` and ``writes`` are its contract: the runner records their Delta versions in the
    run's manifest (reads as the stage starts, writes as it ends: what replay pins) and, while the stage runs, the
    lakehouse checks every table access against them (:meth:`issuerisk.lakehouse.ArrowTables.declared`: refused
    under ``ISSUERISK_STRICT_TABLES=1``, as in the tests; else warned about and recorded too).

    A stage that reads silver tables never sees a mix of filter builds: when the three tables disagree (a filter
    killed between its commits), the registered stage that writes them all runs first, or, without a registry
    (``ctx.stages``), the stage is refused.

    Raises:
        MixedSilverError: the silver tables are mixed and no registered stage can rebuild them.
        UndeclaredTableError: strict, and the stage touched a table it does not declare.
    """
    _stop_point()
    if SILVER_NAMES & set(stage.reads):
        try:
            silver_build(ctx.lake.arrow)
        except MixedSilverError as exc:
            writer = next((s for s in (ctx.stages or {}).values() if SILVER_NAMES <= set(s.writes)), None)
            if writer is None:
                raise
            print(f"issuerisk: {exc.args[0].split(';')[0]}; rebuilding them first ({writer.name})", file=sys.stderr)
            execute(writer, ctx, {})
    ctx.run.stage(
        stage.name, {"did": stage.help, "config_sections": list(stage.sections), "step": len(ctx.run.metrics)}
    )
    t0, ticks = time.perf_counter(), cpu_ticks()
    previous = ctx.run.begin(stage.name)
    tables = ctx.lake.arrow
    contract = (
        Contract(stage.name, frozenset(stage.reads), frozenset(stage.writes), os.environ.get(STRICT_ENV) == "1")
        if stage.reads or stage.writes
        else None
    )
    seen = set(tables.undeclared)
    try:
        ctx.run.read(*stage.reads)
        with tables.declared(contract):
            result = stage.run(ctx, **{k: v for k, v in args.items() if k in stage.arguments}) or {}
    finally:  # what a failed stage wrote before it failed is in the manifest too
        extra = tables.undeclared - seen
        ctx.run.read(*sorted(name for access, name in extra if access == "read"))
        ctx.run.wrote(*stage.writes, *sorted(name for access, name in extra if access == "write"))
        ctx.run.begin(previous)
    _stop_point()
    seconds = round(time.perf_counter() - t0, 2)
    timing = {"stage_seconds": seconds, "cpu_cores_busy": cores_busy(ticks, cpu_ticks())}
    ctx.run.stage(stage.name, {**{k: v for k, v in result.items() if jsonable(v)}, **timing})
    return {**result, **timing}
