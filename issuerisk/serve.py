"""``issuerisk serve``: a long-lived Spark Connect server on the configured catalog, so ad hoc SQL starts no JVM.

The server is this command's own SparkSession (Delta, the configured Hive metastore and warehouse, the
configured master) with Spark's Connect plugin, listening at ``spark.remote`` (``sc://host:port``).
``issuerisk sql`` uses it when it answers, a notebook connects with ``SparkSession.builder.remote(...)``.

Who may use it (:mod:`issuerisk.lakehouse.connect_auth`): every Connect call and every read-only check must
carry the server's token, which serve writes to a file only its user can read; a client without it is refused
before any plan runs. The server listens on the loopback interface; another address needs ``--allow-remote``
and a TLS-terminating proxy in front (the Connect client sends tokens in clear only to localhost).

What a statement may do there: files are not tables (``spark.sql.runSQLOnFiles`` is off, so ``text.`/etc/x```
fails in every session); Spark jobs that run longer than ``serve.statement_timeout_s`` are cancelled; a result
larger than ``serve.max_result_size`` fails; code never runs on the server (TRANSFORM, java_method, Python and
client-shipped functions are refused in every session by :mod:`issuerisk.lakehouse.jvm_guard`). A token holder may
still write tables (as the warehouse's owner may);
``issuerisk sql`` asks the check endpoint first and runs only what it passes unless ``--write``.

With ``--jdbc-port``, the same session also serves Spark's Thrift JDBC/ODBC server (HiveServer2's protocol,
``jdbc:hive2://host:port/issuerisk``) for JDBC clients such as beeline or DBeaver, only with an authentication
mode other than NONE (``spark.extra['spark.hadoop.hive.server2.authentication']``: LDAP or CUSTOM, see
infra/README.md). Its sessions load classes through Hive's class loader, which does not see jars added at run
time (``spark.jars.packages``), so Delta's jars must be on ``spark.driver_class_path`` too.

Beside the Connect server, on the next port, a small HTTP endpoint answers ``POST /check`` with the read-only verdict of
:func:`issuerisk.queries.check_read_only` on this JVM's own parser: a Connect client has no JVM to parse
with, and Connect runs a command as soon as it receives it, so ``issuerisk sql`` asks here first. It takes
a bounded number of requests at once, each with a socket timeout and a size limit.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import TYPE_CHECKING, Any

from issuerisk.constants import LOOPBACK_HOSTS
from issuerisk.lakehouse.connect_auth import SPARK_TOKEN_ENV, authorized, client_url, server_token, token_path
from issuerisk.lakehouse.jvm_guard import GUARD_CLASS, GuardBuildError, guard_jar
from issuerisk.lakehouse.read_only import (
    CHECK_PATH,
    DEFAULT_REMOTE,
    ReadOnlyError,
    check_read_only,
    check_url,
    endpoints,
)
from issuerisk.stage import Option, Stage

if TYPE_CHECKING:
    from issuerisk.context import Context

CONNECT_PLUGIN = "org.apache.spark.sql.connect.SparkConnectPlugin"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"
JDBC_AUTH_KEY = "spark.hadoop.hive.server2.authentication"
JDBC_AUTH_MODES = ("LDAP", "CUSTOM")


class ServeError(RuntimeError):
    """The Spark Connect server could not be started as configured."""


def configure(cfg: Any, args: dict[str, Any]) -> tuple[Any, dict[str, int]]:
    """The config the server runs under: Spark's Connect plugin on, bound to ``spark.remote``'s host and port, files
    not readable as tables, the result size capped.

    Every session of the server runs :mod:`issuerisk.lakehouse.jvm_guard`'s check rule: no TRANSFORM, java_method,
    reflect, Python UDF or client-shipped function.

    Raises:
        ServeError: the host is not a loopback address and ``--allow-remote`` was not given, ``--jdbc-port`` was
            given without an authentication mode (LDAP or CUSTOM) for the Thrift server, or the guard cannot be
            compiled.
    """
    from issuerisk.lakehouse.spark_session import DELTA_CONF

    remote = cfg.spark.remote or DEFAULT_REMOTE
    host, port, _ = endpoints(remote)
    if host not in LOOPBACK_HOSTS and not args.get("allow_remote"):
        raise ServeError(
            f"issuerisk serve listens on the loopback interface only; {remote} names {host}. To serve other machines, "
            "pass "
            "--allow-remote and put a TLS-terminating proxy in front: the Connect client sends its token in clear to "
            "any host but localhost"
        )
    try:
        guard = str(guard_jar(cfg.cache_dir(None, "jvm")))
    except GuardBuildError as exc:
        raise ServeError(str(exc)) from None
    extra = {
        **cfg.spark.extra,
        "spark.plugins": ",".join(p for p in (cfg.spark.extra.get("spark.plugins"), CONNECT_PLUGIN) if p),
        "spark.connect.grpc.binding.address": host,
        "spark.connect.grpc.binding.port": str(port),
        "spark.sql.runSQLOnFiles": "false",
        "spark.driver.maxResultSize": cfg.serve.max_result_size,
        "spark.sql.extensions": ",".join((DELTA_CONF["spark.sql.extensions"], GUARD_CLASS)),
    }
    if args.get("jdbc_port"):
        mode = str(cfg.spark.extra.get(JDBC_AUTH_KEY, "NONE")).upper()
        if mode not in JDBC_AUTH_MODES:
            raise ServeError(
                f"--jdbc-port needs an authentication mode for the Thrift JDBC server, got {mode}: set "
                f"spark.extra['{JDBC_AUTH_KEY}'] "
                "to LDAP (with spark.hadoop.hive.server2.authentication.ldap.url) or CUSTOM (with "
                "spark.hadoop.hive.server2.custom.authentication.class); see infra/README.md"
            )
        extra.update(
            {
                "spark.hadoop.hive.server2.thrift.bind.host": host,
                "spark.hadoop.hive.server2.thrift.port": str(args["jdbc_port"]),
                "spark.hadoop.hive.server2.transport.mode": "binary",
                "spark.sql.thriftServer.queryTimeout": f"{int(cfg.serve.statement_timeout_s)}s",
            }
        )
    # a long-lived driver profits from C2; the default's C1-only options are for short commands
    # the guard runs in the driver only (analysis): on its class path, never shipped to executors
    driver_class_path = [*cfg.spark.driver_class_path, guard]
    return (
        cfg.updated("spark", extra=extra, remote=remote, driver_java_options=None, driver_class_path=driver_class_path),
        {},
    )


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


class BoundedHTTPServer(HTTPServer):
    """An HTTP server that answers at most ``threads`` requests at once and refuses the rest with 503 at once."""

    def __init__(self, address: tuple[str, int], handler: type, threads: int) -> None:
        super().__init__(address, handler)
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="issuerisk-sql-check")
        self._slots = threading.BoundedSemaphore(threads)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            try:
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            except OSError:
                pass
            self.shutdown_request(request)
            return
        self._pool.submit(self._serve_one, request, client_address)

    def _serve_one(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001 (a broken client must not end the server)
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass

    def server_close(self) -> None:
        super().server_close()
        self._pool.shutdown(wait=False, cancel_futures=True)


def check_server(spark: Any, host: str, port: int, token: str, serve_cfg: Any) -> BoundedHTTPServer:
    """The read-only check endpoint (``POST /check`` with the statement as the body and ``Authorization: Bearer
    <token>``), serving in a daemon thread.

    Raises:
        ServeError: the port is taken.
    """

    class Handler(BaseHTTPRequestHandler):
        timeout = serve_cfg.check_timeout_s  # a client that sends nothing holds a thread this long at most

        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            if not authorized(self.headers.get("Authorization"), token):
                self.send_error(401, "the server's token is required (Authorization: Bearer ...)")
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if self.path != CHECK_PATH or not 0 < length <= serve_cfg.max_query_bytes:
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
        server = BoundedHTTPServer((host, port), Handler, serve_cfg.check_threads)
    except OSError as exc:
        raise ServeError(
            f"the read-only check endpoint cannot listen on {host}:{port} ({exc}); stop what uses it or pick another "
            "spark.remote port"
        ) from None
    threading.Thread(target=server.serve_forever, name="issuerisk-sql-check", daemon=True).start()
    return server


def watch_statements(spark: Any, timeout_s: float, stop: threading.Event, poll_s: float = 1.0) -> threading.Thread:
    """Cancel every Spark job that has run longer than ``timeout_s`` (the server's statement timeout), until
    ``stop``."""
    tracker, jsc = spark.sparkContext.statusTracker(), spark.sparkContext._jsc.sc()
    first_seen: dict[int, float] = {}

    def watch() -> None:
        while not stop.wait(poll_s):
            now = time.monotonic()
            active = set(tracker.getActiveJobsIds())
            for job in active:
                if now - first_seen.setdefault(job, now) > timeout_s:
                    jsc.cancelJob(
                        job, f"issuerisk serve: statement ran longer than serve.statement_timeout_s={timeout_s:g}"
                    )
            for job in set(first_seen) - active:
                del first_seen[job]

    thread = threading.Thread(target=watch, name="issuerisk-statement-timeout", daemon=True)
    thread.start()
    return thread


WARM_UP_CLIENT = """
import sys
from pyspark.sql import SparkSession
spark = SparkSession.builder.remote(sys.argv[1]).getOrCreate()
spark.sql(sys.argv[2]).collect()
spark.stop()
"""


def warm_up(spark: Any, url: str, token: str, database: str) -> None:
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
        # the token reaches the client in its environment (PySpark's Connect client reads it there), not in its argv
        subprocess.run(
            [sys.executable, "-c", WARM_UP_CLIENT, client_url(url, None), query],
            capture_output=True,
            timeout=120,
            check=True,
            env={**os.environ, SPARK_TOKEN_ENV: token},
        )
    except Exception as exc:  # a warehouse without the database yet still serves
        print(f"issuerisk serve: warm-up skipped ({str(exc).splitlines()[0][:200]})", file=sys.stderr)


def serve(ctx: Context, jdbc_port: int | None = None, allow_remote: bool = False) -> dict[str, Any]:
    """Start the Spark Connect server and the read-only check (and the Thrift JDBC server), then serve until SIGINT or
    SIGTERM.

    Raises:
        ServeError: the Connect server did not come up (its port is taken, or the plugin is missing), or
            the Thrift JDBC server could not start.
    """
    from issuerisk.lakehouse.spark_session import remote_answers

    url = ctx.cfg.spark.remote
    host, port, check_port = endpoints(url)
    if remote_answers(url):
        raise ServeError(
            f"something already listens at {url}: another issuerisk serve? Stop it, or pick another port with --remote "
            f"sc://{host}:PORT"
        )
    token = server_token(ctx.cfg)
    os.environ[SPARK_TOKEN_ENV] = token  # Connect's interceptor reads it in the JVM, which inherits this environment
    t0 = time.perf_counter()
    spark = ctx.spark
    deadline = time.monotonic() + 30
    while not remote_answers(url) and time.monotonic() < deadline:
        time.sleep(0.2)
    if not remote_answers(url, timeout_s=2.0):
        raise ServeError(
            f"Spark started but its Connect server does not answer at {url}; check spark.plugins and that pyspark's "
            "jars hold spark-connect"
        )
    warm_up(spark, url, token, ctx.cfg.project.database)
    checker = check_server(spark, host, check_port, token, ctx.cfg.serve)
    stop = threading.Event()
    watch_statements(spark, ctx.cfg.serve.statement_timeout_s, stop)
    jdbc = ""
    if jdbc_port:
        try:
            spark._jvm.java.lang.ClassLoader.getSystemClassLoader().loadClass(DELTA_CATALOG)
        except Exception:
            checker.shutdown()
            raise ServeError(
                "the Thrift JDBC server's sessions cannot load Delta's catalog: put Delta's jars (those Spark "
                "resolved, "
                "e.g. ~/.ivy2.5.2/jars/io.delta_*.jar and io.unitycatalog_*.jar) on spark.driver_class_path"
            ) from None
        try:
            spark._jvm.org.apache.spark.sql.hive.thriftserver.HiveThriftServer2.startWithContext(
                spark._jsparkSession.sqlContext()
            )
        except Exception as exc:  # py4j errors carry no useful type
            checker.shutdown()
            raise ServeError(
                f"the Thrift JDBC server did not start on {host}:{jdbc_port} ({str(exc).splitlines()[0][:200]}); pick "
                "another --jdbc-port"
            ) from exc
        jdbc = f", JDBC at jdbc:hive2://{host}:{jdbc_port}/{ctx.cfg.project.database}"
    started = round(time.perf_counter() - t0, 1)
    print(
        f"Spark Connect at {url} (Spark {spark.version}, master {ctx.cfg.spark.master}, warehouse "
        f"{ctx.cfg.project.warehouse}){jdbc}, "
        f"read-only checks at {check_url(url)}; clients need the token in {token_path(ctx.cfg)}; started in {started} "
        "s. "
        "Ctrl-C or SIGTERM stops it.",
        flush=True,
    )
    served_s = time.perf_counter()
    stopped_by: list[str] = []

    def _stop(signum: int, frame: Any) -> None:
        stopped_by.append(signal.Signals(signum).name)
        stop.set()

    previous = {
        s: signal.signal(s, _stop) for s in (signal.SIGTERM, signal.SIGHUP)
    }  # a stop is this command's normal end
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        stopped_by.append("SIGINT")
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        stop.set()
        checker.shutdown()
        checker.server_close()
    print(f"issuerisk serve: stopped by {stopped_by[0]}", file=sys.stderr)
    return {
        "remote": url,
        "startup_seconds": started,
        "served_seconds": round(time.perf_counter() - served_s, 1),
        "stopped_by": stopped_by[0],
    }


SERVE = Stage(
    "serve",
    "Serve Spark SQL over Spark Connect (sc://) on the configured catalog until stopped; issuerisk sql then starts no "
    "JVM",
    serve,
    options=(
        Option(
            ("--remote",),
            f"sc://host:port to listen at (default: spark.remote, else {DEFAULT_REMOTE})",
            config_key="spark.remote",
        ),
        Option(
            ("--jdbc-port",),
            "also serve Spark's Thrift JDBC/ODBC server (jdbc:hive2://) on this port, with LDAP or CUSTOM "
            "authentication (spark.extra['spark.hadoop.hive.server2.authentication']); no read-only check there",
            argparse={"type": int},
        ),
        Option(
            ("--allow-remote",),
            "listen on a non-loopback address of --remote (put a TLS-terminating proxy in front)",
            argparse={"action": "store_true"},
        ),
    ),
    configure=configure,
)
