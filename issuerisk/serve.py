"""``issuerisk serve``: a long-lived Spark Connect server on the configured catalog, so ad hoc SQL starts no JVM.

The server is this command's own SparkSession (Delta, the configured Hive metastore and warehouse, the
configured master) with Spark's Connect plugin, listening at ``spark.remote`` (``sc://host:port``).
``issuerisk sql`` uses it when it answers, a notebook connects with ``SparkSession.builder.remote(...)``.

With ``--jdbc-port``, the same session also serves Spark's Thrift JDBC/ODBC server (HiveServer2's protocol,
``jdbc:hive2://host:port/issuerisk``) for JDBC clients such as beeline or DBeaver; that path has no
read-only check. Its sessions load classes through Hive's class loader, which does not see jars added at
run time (``spark.jars.packages``), so Delta's jars must be on ``spark.driver_class_path`` too.

Beside the Connect server, on the next port, a small HTTP endpoint answers ``POST /check`` with the read-only verdict of
:func:`issuerisk.queries.check_read_only` on this JVM's own parser: a Connect client has no JVM to parse
with, and Connect runs a command as soon as it receives it, so ``issuerisk sql`` asks here first. The
Connect server itself takes writes from any client that reaches it (as Spark's does): it listens on the
loopback interface unless ``spark.remote`` names another host.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from issuerisk.lakehouse.read_only import CHECK_PATH, DEFAULT_REMOTE, ReadOnlyError, check_read_only, check_url, endpoints
from issuerisk.stage import Option, Stage

CONNECT_PLUGIN = "org.apache.spark.sql.connect.SparkConnectPlugin"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"
MAX_QUERY_BYTES = 1 << 20


class ServeError(RuntimeError):
    """The Spark Connect server could not be started as configured."""


def configure(cfg: Any, args: dict[str, Any]) -> tuple[Any, dict[str, int]]:
    """The config the server runs under: Spark's Connect plugin on, bound to ``spark.remote``'s host and port."""
    remote = cfg.spark.remote or DEFAULT_REMOTE
    host, port, _ = endpoints(remote)
    extra = {**cfg.spark.extra, "spark.plugins": ",".join(p for p in (cfg.spark.extra.get("spark.plugins"), CONNECT_PLUGIN) if p),
             "spark.connect.grpc.binding.address": host, "spark.connect.grpc.binding.port": str(port)}
    if args.get("jdbc_port"):
        extra.update({"spark.hadoop.hive.server2.thrift.bind.host": host, "spark.hadoop.hive.server2.thrift.port": str(args["jdbc_port"]),
                      "spark.hadoop.hive.server2.transport.mode": "binary"})
    # a long-lived driver profits from C2; the default's C1-only options are for short commands
    return cfg.updated("spark", extra=extra, remote=remote, driver_java_options=None), {}


def verdict(spark: Any, query: str) -> dict[str, str | bool]:
    """``{"ok": True}``, ``{"refused": why}`` or ``{"parse_error": Spark's message}`` for one statement."""
    from pyspark.errors import ParseException

    try:
        check_read_only(spark, query)
    except ReadOnlyError as exc:
        return {"refused": str(exc)}
    except ParseException as exc:
        return {"parse_error": str(exc)}
    return {"ok": True}


def check_server(spark: Any, host: str, port: int) -> ThreadingHTTPServer:
    """The read-only check endpoint (``POST /check`` with the statement as the body), serving in a daemon thread.

    Raises:
        ServeError: the port is taken.
    """

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            length = int(self.headers.get("Content-Length") or 0)
            if self.path != CHECK_PATH or not 0 < length <= MAX_QUERY_BYTES:
                self.send_error(404 if self.path != CHECK_PATH else 413)
                return
            body = json.dumps(verdict(spark, self.rfile.read(length).decode("utf-8", "replace"))).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    try:
        server = ThreadingHTTPServer((host, port), Handler)
    except OSError as exc:
        raise ServeError(f"the read-only check endpoint cannot listen on {host}:{port} ({exc}); stop what uses it or pick another spark.remote port") from None
    threading.Thread(target=server.serve_forever, name="issuerisk-sql-check", daemon=True).start()
    return server


WARM_UP_CLIENT = """
import sys
from pyspark.sql import SparkSession
spark = SparkSession.builder.remote(sys.argv[1]).getOrCreate()
spark.sql(sys.argv[2]).collect()
spark.stop()
"""


def warm_up(spark: Any, url: str, database: str) -> None:
    """Pay once what a fresh server's first client pays (the parser and read-only check, the catalog, Delta's
    log reader and every table's snapshot, a Connect session and its Arrow results): without it the first
    ``issuerisk sql`` took 4-6 s where the next ones took 1.6 s (bench.sql). A failure only costs the first
    client those seconds."""
    import subprocess

    verdict(spark, "SELECT 1")
    try:
        tables = [row.tableName for row in spark.sql(f"SHOW TABLES IN {database}").collect()]
        for table in tables:  # each Delta table's first read loads its log's snapshot, which the JVM then caches
            spark.sql(f"SELECT count(*) FROM {database}.{table}").collect()
        query = f"SELECT count(*) FROM {database}.runs" if "runs" in tables else "SELECT 1"
        subprocess.run([sys.executable, "-c", WARM_UP_CLIENT, url, query], capture_output=True, timeout=120, check=True)
    except Exception as exc:  # a warehouse without the database yet still serves
        print(f"issuerisk serve: warm-up skipped ({str(exc).splitlines()[0][:200]})", file=sys.stderr)


def serve(ctx: Any, jdbc_port: int | None = None) -> dict[str, Any]:
    """Start the Spark Connect server and the read-only check (and the Thrift JDBC server), then serve until SIGINT or SIGTERM.

    Raises:
        ServeError: the Connect server did not come up (its port is taken, or the plugin is missing), or
            the Thrift JDBC server could not start.
    """
    from issuerisk.lakehouse.spark_session import remote_answers

    url = ctx.cfg.spark.remote
    host, port, check_port = endpoints(url)
    if remote_answers(url):
        raise ServeError(f"something already listens at {url}: another issuerisk serve? Stop it, or pick another port with --remote sc://{host}:PORT")
    t0 = time.perf_counter()
    spark = ctx.spark
    deadline = time.monotonic() + 30
    while not remote_answers(url) and time.monotonic() < deadline:
        time.sleep(0.2)
    if not remote_answers(url, timeout_s=2.0):
        raise ServeError(f"Spark started but its Connect server does not answer at {url}; check spark.plugins and that pyspark's jars hold spark-connect")
    warm_up(spark, url, ctx.cfg.project.database)
    checker = check_server(spark, host, check_port)
    jdbc = ""
    if jdbc_port:
        try:
            spark._jvm.java.lang.ClassLoader.getSystemClassLoader().loadClass(DELTA_CATALOG)
        except Exception:
            checker.shutdown()
            raise ServeError("the Thrift JDBC server's sessions cannot load Delta's catalog: put Delta's jars (those Spark resolved, "
                             "e.g. ~/.ivy2.5.2/jars/io.delta_*.jar and io.unitycatalog_*.jar) on spark.driver_class_path") from None
        try:
            spark._jvm.org.apache.spark.sql.hive.thriftserver.HiveThriftServer2.startWithContext(spark._jsparkSession.sqlContext())
        except Exception as exc:  # py4j errors carry no useful type
            checker.shutdown()
            raise ServeError(f"the Thrift JDBC server did not start on {host}:{jdbc_port} ({str(exc).splitlines()[0][:200]}); pick another --jdbc-port") from exc
        jdbc = f", JDBC at jdbc:hive2://{host}:{jdbc_port}/{ctx.cfg.project.database}"
    started = round(time.perf_counter() - t0, 1)
    print(f"Spark Connect at {url} (Spark {spark.version}, master {ctx.cfg.spark.master}, warehouse {ctx.cfg.project.warehouse}){jdbc}, "
          f"read-only checks at {check_url(url)}; started in {started} s. Ctrl-C or SIGTERM stops it.", flush=True)
    served_s = time.perf_counter()
    stopped_by: list[str] = []
    stop = threading.Event()

    def _stop(signum: int, frame: Any) -> None:
        stopped_by.append(signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, _stop) for s in (signal.SIGTERM, signal.SIGHUP)}  # a stop is this command's normal end
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        stopped_by.append("SIGINT")
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        checker.shutdown()
    print(f"issuerisk serve: stopped by {stopped_by[0]}", file=sys.stderr)
    return {"remote": url, "startup_seconds": started, "served_seconds": round(time.perf_counter() - served_s, 1), "stopped_by": stopped_by[0]}


SERVE = Stage(
    "serve", "Serve Spark SQL over Spark Connect (sc://) on the configured catalog until stopped; issuerisk sql then starts no JVM", serve,
    options=(Option(("--remote",), f"sc://host:port to listen at (default: spark.remote, else {DEFAULT_REMOTE})", config_key="spark.remote"),
             Option(("--jdbc-port",), "also serve Spark's Thrift JDBC/ODBC server (jdbc:hive2://) on this port; no read-only check there",
                    argparse={"type": int})),
    configure=configure,
)
