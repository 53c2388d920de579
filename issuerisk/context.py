"""What every stage receives: the config, the run's manifest, and Spark and Ray started on first use.

Stages never build a SparkSession or call ``ray.init`` themselves; they ask the
context, so one command starts each at most once and tests inject their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from conf import Config
from jobs.runs import Run


@dataclass
class Context:
    """Config, run manifest and lazily started engines for one command."""

    cfg: Config
    run: Run
    spark_session: Any = None
    ray_started: bool = False
    progress: bool = True
    _extra: dict[str, Any] = field(default_factory=dict)

    @property
    def spark(self):
        """The one SparkSession (started with Delta and the catalog on first use)."""
        if self.spark_session is None:
            from jobs.spark import get_spark
            from jobs.tables import ensure_tables

            self.spark_session = get_spark(self.cfg)
            ensure_tables(self.spark_session, self.cfg)
        if "spark" not in self.run.runtime:
            self.run.record_spark(self.spark_session)
        return self.spark_session

    def ray(self) -> None:
        """Start or join Ray as configured (at most once per command)."""
        if not self.ray_started:
            from ray_tasks.runtime import init_ray

            self.run.runtime.update(init_ray(self.cfg.ray))
            self.ray_started = True

    def with_config(self, cfg: Config) -> "Context":
        """The same command's context with a changed config (the run records the new one)."""
        self.cfg = cfg
        self.run.cfg = cfg
        return self
