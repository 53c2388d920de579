"""The one place that opens, creates, reads and writes the project's Delta tables.

Two sides share the table specs of :mod:`issuerisk.schemas`:

* :class:`~issuerisk.lakehouse.arrow_tables.ArrowTables` (delta-rs, no JVM) for the
  run ledger, the crawler, the Ray stages and the analysis stages;
* :class:`~issuerisk.lakehouse.spark_tables.SparkTables` (one SparkSession, from
  :mod:`issuerisk.lakehouse.spark_session`) for the Spark jobs and ad hoc SQL.

Both create a missing table from its spec and MERGE by its key (``insert``,
``upsert``, ``replace_run``); a table either side creates is readable by the other
and by Spark SQL by name in a later process. No other module opens a Delta table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from issuerisk.conf import Config
from issuerisk.lakehouse.arrow_tables import ArrowTables, PinnedTableError, TableVersionError, spec_of

__all__ = ["ArrowTables", "Lakehouse", "PinnedTableError", "TableVersionError", "spec_of"]


class Lakehouse:
    """Both sides of one warehouse; the Spark side starts Spark on first use through ``spark_factory``."""

    def __init__(self, cfg: Config, spark_factory: Callable[[], Any], pins: dict[str, int] | None = None) -> None:
        self.cfg = cfg
        self.arrow = ArrowTables(cfg, pins)
        self._spark_factory = spark_factory
        self._spark_tables = None

    @property
    def spark(self):
        """The Spark side (:class:`~issuerisk.lakehouse.spark_tables.SparkTables`), Spark started on first use.

        On start every declared table is created or registered in the catalog, so Spark SQL
        finds each by name, also those delta-rs created.
        """
        if self._spark_tables is None:
            from issuerisk.lakehouse.spark_tables import SparkTables

            tables = SparkTables(self._spark_factory(), self.cfg, self.arrow)
            tables.create_all()
            self._spark_tables = tables
        return self._spark_tables

    @property
    def spark_started(self) -> bool:
        return self._spark_tables is not None
