"""The one SparkSession factory: Delta Lake, a persistent catalog and the project's database.

Delta's jars come through Spark's package resolution (delta-spark's
``configure_spark_with_delta_pip``, which names the artifact after the installed
Spark) or, for air-gapped clusters, from ``spark.jars_dir``. The catalog is a Hive
metastore: embedded Derby inside the warehouse by default (so tables survive the
process), or a shared metastore at ``spark.metastore_uri``.
"""

from __future__ import annotations

import errno
import fcntl
import glob
import os
import sys
from pathlib import Path

from pyspark import SparkContext
from pyspark.sql import SparkSession

from issuerisk.conf import Config

DELTA_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}

LOCAL_SNAPSHOT_PARTITIONS = 2
LOOPBACK = "127.0.0.1"


class SparkSetupError(RuntimeError):
    """Spark or Delta could not be started with the given configuration."""


def _local_metastore(cfg: Config) -> Path:
    warehouse = cfg.project.warehouse
    base = Path(warehouse) if "://" not in warehouse else Path.home() / ".issuerisk"
    base.mkdir(parents=True, exist_ok=True)
    return base / "metastore_db"


def _local_only(builder: SparkSession.Builder, extra: dict[str, str]) -> SparkSession.Builder:
    """Keep a local master's listeners on the loopback interface, and its web UI off unless asked for.

    The driver's RPC and block manager ports bind to ``spark.driver.bindAddress``; the web UI has no
    setting of its own and binds to ``$SPARK_LOCAL_IP`` or else every interface, so that variable is
    set (unless already set) for the JVM that this process launches. ``spark.extra`` still wins.
    """
    builder = builder.config("spark.driver.host", LOOPBACK).config("spark.driver.bindAddress", LOOPBACK)
    if "spark.ui.enabled" not in extra:
        builder = builder.config("spark.ui.enabled", "false")
    os.environ.setdefault("SPARK_LOCAL_IP", extra.get("spark.driver.bindAddress", LOOPBACK))
    return builder


def builder_for(cfg: Config) -> SparkSession.Builder:
    """A SparkSession builder with Delta, the catalog and the configured settings (not yet started)."""
    s = cfg.spark
    builder = (
        SparkSession.builder.master(s.master)
        .appName(s.app_name)
        .config("spark.driver.memory", s.driver_memory)
        .config("spark.sql.shuffle.partitions", str(s.shuffle_partitions))
        .config("spark.sql.warehouse.dir", cfg.project.warehouse)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.catalogImplementation", "hive")
        .config("spark.databricks.delta.schema.autoMerge.enabled", "false")
    )
    if s.master.startswith("local"):
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # local workers use this venv's interpreter
        # Delta rebuilds a table's snapshot in 50 partitions by default: seconds per table read on a
        # laptop for logs of a few files (bench/ingest.py). spark.extra may set it back.
        builder = builder.config("spark.databricks.delta.snapshotPartitions", str(LOCAL_SNAPSHOT_PARTITIONS))
        builder = _local_only(builder, s.extra)
    for key, value in DELTA_CONF.items():
        builder = builder.config(key, value)
    java_options = [s.driver_java_options] if s.driver_java_options else []
    if s.metastore_uri:
        builder = builder.config("spark.hadoop.hive.metastore.uris", s.metastore_uri)
    else:
        metastore = _local_metastore(cfg)
        builder = builder.config("spark.hadoop.javax.jdo.option.ConnectionURL", f"jdbc:derby:;databaseName={metastore};create=true")
        java_options += [f"-Dderby.system.home={metastore.parent}", f"-Dderby.stream.error.file={metastore.parent / 'derby.log'}"]
    if java_options:
        builder = builder.config("spark.driver.extraJavaOptions", " ".join(java_options))
    for key, value in s.extra.items():
        builder = builder.config(key, value)
    if s.jars_dir:
        jars = sorted(glob.glob(os.path.join(s.jars_dir, "*.jar")))
        if not jars:
            raise SparkSetupError(f"spark.jars_dir={s.jars_dir!r} holds no .jar files; put delta-spark and delta-storage jars there or set it to null to resolve them from Maven")
        return builder.config("spark.jars", ",".join(jars))
    from delta import configure_spark_with_delta_pip

    return configure_spark_with_delta_pip(builder)


def ensure_metastore_free(cfg: Config) -> None:
    """Refuse an embedded metastore that another process has open (Derby admits one process at a time).

    Derby holds a POSIX lock on ``dbex.lck`` while it runs; the lock file a killed process
    leaves behind holds none, so it does not count. The check comes before Spark starts, so two
    commands started in the same instant can both pass it; the second then fails in Derby.

    Raises:
        SparkSetupError: another process holds the lock, or the lock file cannot be opened.
    """
    if cfg.spark.metastore_uri:
        return
    metastore = _local_metastore(cfg)
    try:
        handle = open(metastore / "dbex.lck", "rb+")
    except FileNotFoundError:
        return
    except OSError as exc:
        raise SparkSetupError(f"cannot open the embedded metastore's lock file ({exc}): the warehouse {cfg.project.warehouse!r} must be writable by this user") from None
    with handle:
        try:
            fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EAGAIN):
                return  # locks unsupported here (e.g. some network file systems): let Derby decide
            advice = ("wait for that issuerisk command to finish or share a Hive metastore (spark.metastore_uri); every object-store warehouse of this user uses this one"
                      if "://" in cfg.project.warehouse else
                      "wait for that issuerisk command to finish, use another --warehouse, or share a Hive metastore (spark.metastore_uri)")
            raise SparkSetupError(
                f"the warehouse's embedded metastore ({metastore}) is open in another process, and Derby admits one at a time: {advice}"
            ) from None
        fcntl.lockf(handle, fcntl.LOCK_UN)


def get_spark(cfg: Config) -> SparkSession:
    """Start (or return the running) SparkSession and make sure the project's database exists.

    Raises:
        SparkSetupError: Java is missing, the Delta jars cannot be resolved, or another process
            has the warehouse's embedded metastore open (:func:`ensure_metastore_free`).
    """
    if SparkContext._gateway is None:  # this process's JVM (also after spark.stop()) holds the lock itself
        ensure_metastore_free(cfg)
    try:
        spark = builder_for(cfg).getOrCreate()
    except Exception as exc:  # py4j/JVM start-up errors carry no useful type
        raise SparkSetupError(
            f"could not start Spark ({exc}); check that Java 17 is installed (java -version) and that Maven Central is reachable for the Delta jars, or set spark.jars_dir"
        ) from exc
    spark.sparkContext.setLogLevel(cfg.spark.log_level)
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {cfg.project.database} LOCATION '{cfg.project.warehouse.rstrip('/')}/{cfg.project.database}.db'")
    return spark
