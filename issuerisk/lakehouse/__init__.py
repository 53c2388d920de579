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
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from issuerisk.conf import Config
from issuerisk.lakehouse.arrow_tables import (
    ArrowTables,
    Contract,
    PinnedTableError,
    TableVersionError,
    UndeclaredTableError,
    spec_of,
)
from issuerisk.schemas import TABLES

__all__ = [
    "ArrowTables",
    "Contract",
    "Lakehouse",
    "PinnedTableError",
    "TableVersionError",
    "UndeclaredTableError",
    "spec_of",
]


class Lakehouse:
    """Both sides of one warehouse; the Spark side starts Spark on first use through ``spark_factory``."""

    def __init__(self, cfg: Config, spark_factory: Callable[[], Any], pins: dict[str, int] | None = None) -> None:
        self.cfg = cfg
        self.arrow = ArrowTables(cfg, pins)
        self._spark_factory = spark_factory
        self._spark_tables = None
        self._registration: Future | None = None

    @property
    def spark(self):
        """The Spark side (:class:`~issuerisk.lakehouse.spark_tables.SparkTables`), Spark started on first use.

        On start every declared table is created or registered in the catalog, so Spark SQL
        finds each by name, also those delta-rs created.
        """
        if self._spark_tables is None:
            self.start_spark()
        return self._spark_tables

    def start_spark(self, register_in_background: bool = False) -> None:
        """Start Spark and register every declared table in the catalog, now or in a background thread.

        Registering the 23 tables of a new warehouse costs about 10 s of catalog work here, which a
        ``run`` overlaps with its stages (each stage's own Spark tables are created on demand, under the
        Spark side's lock): delta-rs first creates every missing table (0.3 s), so the thread only adds
        existing Delta folders to the catalog and never races a writer for a table's first commit.
        :meth:`registered` waits for it.
        """
        from issuerisk.lakehouse.spark_tables import SparkTables

        tables = SparkTables(self._spark_factory(), self.cfg, self.arrow)
        if not register_in_background:
            tables.create_all()
            self._spark_tables = tables
            return
        for spec in TABLES.values():
            if not self.arrow.exists(spec):
                self.arrow.create(spec)
        self._spark_tables = tables
        pool = ThreadPoolExecutor(1, thread_name_prefix="issuerisk-register-tables")
        self._registration = pool.submit(tables.create_all)
        pool.shutdown(wait=False)

    def registered(self, check: bool = True) -> None:
        """Wait until a background registration (:meth:`start_spark`) is done; re-raise its error when ``check``."""
        if self._registration is None:
            return
        error = self._registration.exception()  # waits
        if check:
            self._registration = None
            if error is not None:
                raise error

    @property
    def spark_started(self) -> bool:
        return self._spark_tables is not None
