"""The one SparkSession factory: Delta Lake, a persistent catalog and the project's database.

Delta's jars come through Spark's package resolution (delta-spark's
``configure_spark_with_delta_pip``, which names the artifact after the installed
Spark, plus ``spark.packages``) or, for air-gapped clusters, from ``spark.jars_dir``.
The catalog is a Hive metastore: embedded Derby inside the warehouse by default (so
tables survive the process), a shared metastore service at ``spark.metastore_uri``,
or a shared metastore database at ``spark.metastore_jdbc_url`` that each driver opens
with Spark's built-in Hive client (the schema is created on first use; the password
comes from ``ISSUERISK_METASTORE_PASSWORD``, never from config).

With ``spark.remote`` set, :func:`remote_session` gives a Spark Connect session of an
``issuerisk serve`` server instead, when that server answers.
"""

from __future__ import annotations

import errno
import fcntl
import glob
import os
import shlex
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from pyspark import SparkContext
from pyspark.sql import SparkSession

from issuerisk.conf import Config
from issuerisk.conf.settings import CONNECT_TOKEN_KEY
from issuerisk.constants import LOOPBACK_HOSTS
from issuerisk.lakehouse import class_archive
from issuerisk.lakehouse.connect_auth import client_token, client_url
from issuerisk.lakehouse.read_only import endpoints

DELTA_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}

LOCAL_SNAPSHOT_PARTITIONS = 2
LOOPBACK = "127.0.0.1"
METASTORE_PASSWORD_ENV = "ISSUERISK_METASTORE_PASSWORD"
SPARK_AUTH_SECRET_ENV = "ISSUERISK_SPARK_AUTH_SECRET"
JDBC_DRIVERS = {
    "postgresql": "org.postgresql.Driver",
    "mysql": "com.mysql.cj.jdbc.Driver",
    "mariadb": "org.mariadb.jdbc.Driver",
    "sqlserver": "com.microsoft.sqlserver.jdbc.SQLServerDriver",
    "oracle": "oracle.jdbc.OracleDriver",
}
"""The JDBC driver class of each metastore database kind (the part after ``jdbc:``); its jar goes on
``spark.driver_class_path``."""
REMOTE_PROBE_S = 0.3


class SparkSetupError(RuntimeError):
    """Spark or Delta could not be started with the given configuration."""


def _local_metastore(cfg: Config) -> Path:
    warehouse = cfg.project.warehouse
    base = Path(warehouse) if "://" not in warehouse else Path.home() / ".issuerisk"
    base.mkdir(parents=True, exist_ok=True)
    return base / "metastore_db"


def _on_this_machine(master: str) -> bool:
    """A local master, or a standalone master on the loopback interface (``infra/local-cluster.sh``): every executor
    runs here."""
    if master.startswith("local"):
        return True
    return master.startswith("spark://") and (urlsplit(master).hostname or "") in LOOPBACK_HOSTS


def _jdbc_metastore(builder: SparkSession.Builder, url: str, user: str | None) -> SparkSession.Builder:
    """Spark's built-in Hive client on a shared metastore database: DataNucleus creates the schema on first use.

    Raises:
        SparkSetupError: the URL names a database kind without a known JDBC driver.
    """
    kind = url.removeprefix("jdbc:").split(":", 1)[0]
    if kind not in JDBC_DRIVERS:
        raise SparkSetupError(
            f"spark.metastore_jdbc_url names a {kind!r} database; the metastore supports "
            f"{', '.join(sorted(JDBC_DRIVERS))}"
        )
    settings = {
        "javax.jdo.option.ConnectionURL": url,
        "javax.jdo.option.ConnectionDriverName": JDBC_DRIVERS[kind],
        "datanucleus.schema.autoCreateAll": "true",
        "hive.metastore.schema.verification": "false",
    }
    if user:
        settings["javax.jdo.option.ConnectionUserName"] = user
    for key, value in settings.items():  # the password is a secret: see secret_settings
        builder = builder.config(f"spark.hadoop.{key}", value)
    return builder


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


def builder_for(cfg: Config, jvm_options: list[str] | None = None) -> SparkSession.Builder:
    """A SparkSession builder with Delta, the catalog and the configured settings (not yet started).

    Args:
        jvm_options: further options of the driver JVM, after ``spark.driver_java_options`` (the class archive's,
            :func:`issuerisk.lakehouse.class_archive.java_options`).
    """
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
    if _on_this_machine(s.master):
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # executors on this machine use this venv's interpreter
        # Delta rebuilds a table's snapshot in 50 partitions by default: seconds per table read on a
        # laptop for logs of a few files (bench/ingest.py). spark.extra may set it back.
        builder = builder.config("spark.databricks.delta.snapshotPartitions", str(LOCAL_SNAPSHOT_PARTITIONS))
        builder = _local_only(builder, s.extra)
    for key, value in DELTA_CONF.items():
        builder = builder.config(key, value)
    java_options = [s.driver_java_options] if s.driver_java_options else []
    java_options += jvm_options or []
    if s.metastore_uri:
        builder = builder.config("spark.hadoop.hive.metastore.uris", s.metastore_uri)
    elif s.metastore_jdbc_url:
        builder = _jdbc_metastore(builder, s.metastore_jdbc_url, s.metastore_user)
    else:
        metastore = _local_metastore(cfg)
        builder = builder.config(
            "spark.hadoop.javax.jdo.option.ConnectionURL", f"jdbc:derby:;databaseName={metastore};create=true"
        )
        java_options += [
            f"-Dderby.system.home={metastore.parent}",
            f"-Dderby.stream.error.file={metastore.parent / 'derby.log'}",
        ]
    if java_options:
        builder = builder.config("spark.driver.extraJavaOptions", " ".join(java_options))
    if s.driver_class_path:
        missing = [jar for jar in s.driver_class_path if "://" not in jar and not os.path.exists(jar)]
        if missing:
            raise SparkSetupError(
                f"spark.driver_class_path names jars that do not exist: {missing}; "
                "infra/local-cluster.sh up fetches the metastore's JDBC driver, or fix the path"
            )
        builder = builder.config("spark.driver.extraClassPath", os.pathsep.join(s.driver_class_path))
    for key, value in s.extra.items():
        if (
            key == CONNECT_TOKEN_KEY
        ):  # a secret, never a --conf (ps shows those): serve hands it to the JVM in its environment
            continue
        builder = builder.config(key, value)
    if s.jars_dir:
        jars = sorted(glob.glob(os.path.join(s.jars_dir, "*.jar")))
        if not jars:
            raise SparkSetupError(
                f"spark.jars_dir={s.jars_dir!r} holds no .jar files; put delta-spark and delta-storage jars there or "
                "set it to null to resolve them from Maven"
            )
        builder = builder.config("spark.jars", ",".join([*jars, *filter(None, [s.extra.get("spark.jars")])]))
        return builder.config("spark.jars.packages", ",".join(s.packages)) if s.packages else builder
    from delta import configure_spark_with_delta_pip

    return configure_spark_with_delta_pip(builder, extra_packages=list(s.packages))


def secret_settings(cfg: Config) -> dict[str, str]:
    """The Spark settings that carry secrets: the metastore database's password (``ISSUERISK_METASTORE_PASSWORD``) and
    Spark's own authentication secret (``ISSUERISK_SPARK_AUTH_SECRET``, which ``infra/local-cluster.sh`` gives its
    master,
    worker and applications). They reach the JVM in a private properties file (:func:`private_properties`), never
    on its command line, where ``ps`` shows them to every user of the machine."""
    settings = {}
    password = os.environ.get(METASTORE_PASSWORD_ENV)
    if password and cfg.spark.metastore_jdbc_url:
        settings["spark.hadoop.javax.jdo.option.ConnectionPassword"] = (
            password  # Spark redacts *password* keys in its UI and logs
        )
    secret = os.environ.get(SPARK_AUTH_SECRET_ENV)
    if secret:
        settings.update({"spark.authenticate": "true", "spark.authenticate.secret": secret})
    return settings


def _property(text: str) -> str:
    """``text`` escaped for a Java properties file (backslashes, line breaks, leading blanks)."""
    text = text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
    return "\\" + text if text[:1] in (" ", "\t") else text


@contextmanager
def private_properties(settings: dict[str, str]) -> Iterator[None]:
    """While the JVM starts, ``settings`` wait for it in a properties file readable by this user only (in a 0700
    temporary
    folder), named to spark-submit through ``PYSPARK_SUBMIT_ARGS``; the file is gone once the JVM has read it."""
    if not settings or SparkContext._gateway is not None:  # a running JVM keeps the settings it started with
        yield
        return
    folder = tempfile.mkdtemp(prefix="issuerisk-spark-")
    path = os.path.join(folder, "secrets.properties")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.writelines(f"{key}={_property(value)}\n" for key, value in settings.items())
    previous = os.environ.get("PYSPARK_SUBMIT_ARGS")
    os.environ["PYSPARK_SUBMIT_ARGS"] = f"--properties-file {shlex.quote(path)} {previous or 'pyspark-shell'}"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("PYSPARK_SUBMIT_ARGS", None)
        else:
            os.environ["PYSPARK_SUBMIT_ARGS"] = previous
        shutil.rmtree(folder, ignore_errors=True)


def ensure_metastore_free(cfg: Config) -> None:
    """Refuse an embedded metastore that another process has open (Derby admits one process at a time).

    Derby holds a POSIX lock on ``dbex.lck`` while it runs; the lock file a killed process
    leaves behind holds none, so it does not count. The check comes before Spark starts, so two
    commands started in the same instant can both pass it; the second then fails in Derby.

    Raises:
        SparkSetupError: another process holds the lock, or the lock file cannot be opened.
    """
    if cfg.spark.metastore_uri or cfg.spark.metastore_jdbc_url:
        return
    metastore = _local_metastore(cfg)
    try:
        handle = open(metastore / "dbex.lck", "rb+")
    except FileNotFoundError:
        return
    except OSError as exc:
        raise SparkSetupError(
            f"cannot open the embedded metastore's lock file ({exc}): the warehouse {cfg.project.warehouse!r} must be "
            "writable by this user"
        ) from None
    with handle:
        try:
            fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EAGAIN):
                return  # locks unsupported here (e.g. some network file systems): let Derby decide
            advice = (
                "wait for that issuerisk command to finish or share a Hive metastore (spark.metastore_uri); every "
                "object-store warehouse of this user uses this one"
                if "://" in cfg.project.warehouse
                else "wait for that issuerisk command to finish, use another --warehouse, or share a Hive metastore "
                "(spark.metastore_uri)"
            )
            raise SparkSetupError(
                f"the warehouse's embedded metastore ({metastore}) is open in another process, and Derby admits one at "
                f"a time: {advice}"
            ) from None
        fcntl.lockf(handle, fcntl.LOCK_UN)


def get_spark(cfg: Config) -> SparkSession:
    """Start (or return the running) SparkSession and make sure the project's database exists.

    Raises:
        SparkSetupError: Java is missing, the Delta jars cannot be resolved, or another process
            has the warehouse's embedded metastore open (:func:`ensure_metastore_free`).
    """
    jvm_options: list[str] = []
    if SparkContext._gateway is None:  # this process's JVM (also after spark.stop()) holds the lock itself
        ensure_metastore_free(cfg)
        jvm_options = class_archive.java_options(cfg)  # a JVM starts now
    try:
        builder = builder_for(cfg, jvm_options)
        with private_properties(secret_settings(cfg)):
            spark = builder.getOrCreate()
    except SparkSetupError:
        raise
    except Exception as exc:  # py4j/JVM start-up errors carry no useful type
        raise SparkSetupError(
            f"could not start Spark ({exc}); check that Java 17 is installed (java -version) and that Maven Central is "
            "reachable for the Delta jars, or set spark.jars_dir"
        ) from exc
    spark.sparkContext.setLogLevel(cfg.spark.log_level)
    try:
        spark.sql(
            f"CREATE DATABASE IF NOT EXISTS {cfg.project.database} LOCATION "
            f"'{cfg.project.warehouse.rstrip('/')}/{cfg.project.database}.db'"
        )
    except Exception as exc:
        if not (cfg.spark.metastore_jdbc_url or cfg.spark.metastore_uri):
            raise
        where = cfg.spark.metastore_jdbc_url or cfg.spark.metastore_uri
        raise SparkSetupError(
            f"Spark started but the shared Hive metastore at {where} did not answer "
            f"({str(exc).splitlines()[0][:300]}); check that it is up "
            f"(infra/local-cluster.sh status), that {METASTORE_PASSWORD_ENV} holds the password of "
            "spark.metastore_user, "
            "and that spark.driver_class_path holds its JDBC driver"
        ) from exc
    return spark


def remote_answers(url: str, timeout_s: float = REMOTE_PROBE_S) -> bool:
    """Whether something accepts TCP connections at a Spark Connect URL's host and port (a quick probe, no RPC)."""
    host, port, _ = endpoints(url)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def remote_session(cfg: Config) -> SparkSession | None:
    """A Spark Connect session of the ``issuerisk serve`` server at ``spark.remote``, or None when none is set or it
    does not answer.

    No JVM starts in this process. The server holds the catalog (the same metastore and warehouse
    as its configuration), Delta and the executors.

    The client sends the server's token (:mod:`issuerisk.lakehouse.connect_auth`): without it the server
    refuses every call.

    Raises:
        SparkSetupError: the server answers TCP but Spark Connect fails (e.g. the client's
            dependencies, ``pyspark[connect]``, are missing).
        TokenError: the token file is readable by other users.
    """
    url = cfg.spark.remote
    if not url or not remote_answers(url):
        return None
    try:
        return SparkSession.builder.remote(client_url(url, client_token(cfg))).getOrCreate()
    except Exception as exc:
        raise SparkSetupError(
            f"the Spark Connect server at spark.remote={url} answers but no session could be opened ({exc}); "
            "install pyspark[connect] (grpcio-status, zstandard) or set spark.remote to null"
        ) from exc
