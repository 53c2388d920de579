"""What every stage receives: the final config, the run's ledger row, the lakehouse, and Ray on demand.

Stages never build a SparkSession, open a Delta table or call ``ray.init``
themselves; they ask the context, so one command starts each engine at most
once and tests inject their own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from issuerisk.conf import Config
from issuerisk.lakehouse import Lakehouse
from issuerisk.ledger import Run


@dataclass
class Context:
    """Config, run manifest, tables and engines for one command.

    Attributes:
        invoke: runs another registered stage by name within this run (the crawler hands its
            files to ``ingest`` this way); set by the runner.
        stages: the registry of stages by name (set by the runner), where the runner finds the stage that rebuilds
            a table it needs.
        warmed: what a stage's ``warm`` started ahead of its ``run`` (see :class:`issuerisk.stage.Stage`).
    """

    cfg: Config
    run: Run
    lake: Lakehouse
    progress: bool = True
    invoke: Callable[..., dict[str, Any]] | None = None
    stages: Mapping[str, Any] | None = None
    ray_started: bool = field(default=False, init=False)
    warmed: dict[str, Any] = field(default_factory=dict, init=False)

    @classmethod
    def open(
        cls, cfg: Config, run: Run, progress: bool = True, spark: Any = None, pins: dict[str, int] | None = None
    ) -> "Context":
        """A context whose Spark starts on first use (with Delta and the catalog), or uses ``spark`` when given.

        Args:
            pins: table name -> Delta version every read sees (a replay); those tables are not written.
        """

        def start_spark() -> Any:
            from issuerisk.lakehouse.spark_session import get_spark

            session = spark if spark is not None else get_spark(cfg)
            run.record_spark(session)
            return session

        lake = Lakehouse(cfg, start_spark, pins)
        run.tables = lake.arrow
        return cls(cfg=cfg, run=run, lake=lake, progress=progress)

    @property
    def spark(self) -> Any:
        """The one SparkSession."""
        return self.lake.spark.spark

    def ray(self) -> None:
        """Start or join Ray as configured (at most once per command)."""
        if not self.ray_started:
            from issuerisk.ray_runtime import init_ray

            self.run.runtime.update(init_ray(self.cfg.ray))
            self.ray_started = True
