"""Issue 25: the served and shared surfaces, each trigger run against the real commands and a real ``issuerisk serve``.

One server (Spark Connect + the read-only check endpoint, local[1], an embedded metastore) serves the module; every
trigger must be refused or harmless, and nothing it reaches may change.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.test_local_cluster import _clean_env, _cli, _finish, _free_port, _serving, _sql_writes

pytestmark = pytest.mark.slow

STATEMENT_TIMEOUT_S = 6


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A running ``issuerisk serve`` with a table ``issuerisk.t`` and a view that calls Java; its env, port and token
    file."""
    tmp = tmp_path_factory.mktemp("served")
    port = _free_port()
    env = {
        **_clean_env(),
        "ISSUERISK_WAREHOUSE": str(tmp / "wh"),
        "ISSUERISK__SPARK__MASTER": "local[1]",
        "ISSUERISK__SPARK__DRIVER_MEMORY": "1g",
        "ISSUERISK__SPARK__SHUFFLE_PARTITIONS": "2",
        "ISSUERISK__SPARK__REMOTE": f"sc://127.0.0.1:{port}",
        "ISSUERISK__SERVE__TOKEN_FILE": str(tmp / "private" / "serve.token"),
        "ISSUERISK__SERVE__STATEMENT_TIMEOUT_S": str(STATEMENT_TIMEOUT_S),
        "ISSUERISK__SERVE__CHECK_TIMEOUT_S": "3",
    }
    secret = tmp / "secret.txt"
    secret.write_text("the metastore password\n")
    # a view that calls Java, made by a session outside serve (serve's own sessions refuse to create it)
    _sql_writes(env, "CREATE VIEW issuerisk.v_env AS SELECT java_method('java.lang.System', 'getenv', 'HOME') AS home")
    server = _serving(env)
    try:
        _sql_writes(
            env,
            "CREATE TABLE issuerisk.t (a INT, b STRING) USING delta",
            "INSERT INTO issuerisk.t VALUES (1, 'x'), (2, 'y')",
            "CREATE VIEW issuerisk.v_ok AS SELECT a FROM issuerisk.t",
        )
        yield {
            "env": env,
            "port": port,
            "token_file": Path(env["ISSUERISK__SERVE__TOKEN_FILE"]),
            "secret": secret,
            "server": server,
        }
    finally:
        server.send_signal(signal.SIGTERM)
        _finish(server, timeout=120)


def _connect(port: int, token: str | None, statement: str) -> subprocess.CompletedProcess:
    """A bare PySpark Connect client (no issuerisk code) running one statement; the token, if any, in its
    environment."""
    client = textwrap.dedent(f"""
        from pyspark.sql import SparkSession
        spark = SparkSession.builder.remote("sc://localhost:{port}").getOrCreate()
        print(spark.sql({statement!r}).collect())
    """)
    env = {k: v for k, v in os.environ.items() if k != "SPARK_CONNECT_AUTHENTICATE_TOKEN"}
    if token:
        env["SPARK_CONNECT_AUTHENTICATE_TOKEN"] = token
    return subprocess.run([sys.executable, "-c", client], env=env, capture_output=True, text=True, timeout=300)


CODE_ATTEMPTS = {
    "java_method": "spark.sql(\"SELECT java_method('java.lang.System', 'getenv', 'HOME')\").collect()",
    "reflect": "spark.sql(\"SELECT reflect('java.lang.Runtime', 'getRuntime')\").collect()",
    "transform": "spark.sql(\"SELECT TRANSFORM(a) USING 'sh -c id' FROM issuerisk.t\").collect()",
    "python_udf": "spark.table('issuerisk.t').select(F.udf(lambda a: __import__('os').getcwd())('a')).collect()",
    "map_in_pandas": "spark.table('issuerisk.t').mapInPandas(lambda frames: frames, 'a int, b string').collect()",
    "view_calling_java": "spark.sql('SELECT * FROM issuerisk.v_env').collect()",
    "create_view_calling_java": "spark.sql(\"CREATE VIEW issuerisk.v_new AS SELECT reflect('java.lang.System', "
    "'getenv', 'HOME')\")",
    "plain_read": "spark.sql('SELECT a FROM issuerisk.t ORDER BY a').collect()",
}


def _attempts(port: int, token: str) -> dict[str, str]:
    """Each of CODE_ATTEMPTS from one bare PySpark Connect client with the token: "ran: result" or "refused: error"."""
    client = textwrap.dedent(f"""
        import json
        from pyspark.sql import SparkSession, functions as F
        spark = SparkSession.builder.remote("sc://localhost:{port}").getOrCreate()
        out = {{}}
        for name, code in json.loads({json.dumps(json.dumps(CODE_ATTEMPTS))}).items():
            try:
                out[name] = "ran: " + repr(eval(code))
            except Exception as exc:
                out[name] = "refused: " + str(exc).splitlines()[0]
        print(json.dumps(out))
    """)
    env = {**os.environ, "SPARK_CONNECT_AUTHENTICATE_TOKEN": token}
    proc = subprocess.run([sys.executable, "-c", client], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _check(port: int, body: bytes, token: str | None) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port + 1}/check",
        data=body,
        method="POST",
        headers={"Authorization": f"Bearer {token}"} if token else {},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_the_token_file_is_private_and_the_token_is_on_no_command_line(served):
    info = served["token_file"].stat()
    assert stat.S_IMODE(info.st_mode) == 0o600 and stat.S_IMODE(served["token_file"].parent.stat().st_mode) == 0o700
    token = served["token_file"].read_text().strip()
    assert len(token) >= 32
    commands = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert token not in commands


def test_a_connect_client_without_the_token_is_refused_before_any_plan_runs(served):
    token = served["token_file"].read_text().strip()
    for given, why in ((None, "No authentication token provided"), ("x" * 43, "Invalid authentication token")):
        proc = _connect(served["port"], given, "DROP TABLE issuerisk.t")
        assert proc.returncode != 0 and "UNAUTHENTICATED" in proc.stderr and why in proc.stderr, proc.stderr[-2000:]
    assert "Row(a=1)" in _connect(served["port"], token, "SELECT a FROM issuerisk.t ORDER BY a").stdout, (
        "the table is still there"
    )


def test_the_check_endpoint_wants_the_token_and_bounds_a_request(served):
    token = served["token_file"].read_text().strip()
    assert _check(served["port"], b"SELECT 1", None) == 401
    assert _check(served["port"], b"SELECT 1", "wrong-token-wrong-token") == 401
    assert _check(served["port"], b"SELECT 1", token) == 200
    assert _check(served["port"], b"SELECT '" + b"x" * 300_000 + b"'", token) == 413
    with socket.create_connection(("127.0.0.1", served["port"] + 1), timeout=60) as idle:  # a client that sends nothing
        idle.sendall(b"POST /check HTTP/1.1\r\n")
        t0 = time.monotonic()
        assert idle.recv(1024) == b""  # the server closes it after its socket timeout (serve.check_timeout_s = 3)
        assert 2 < time.monotonic() - t0 < 30


@pytest.mark.parametrize(
    ("statement", "why"),
    [
        ("SELECT * FROM text.`{secret}`", "it reads the file path"),
        ("SELECT * FROM binaryFile.`{secret}`", "it reads the file path"),
        ("SELECT * FROM delta.`{warehouse}/issuerisk.db/t`", "it reads the file path"),
        ("SELECT * FROM issuerisk.v_env", "its view issuerisk.v_env is not read-only: it calls java_method()"),
        ("SELECT java_method('java.lang.System', 'getenv', 'HOME')", "it calls java_method()"),
        ("SELECT TRANSFORM(a) USING 'sh -c id' FROM issuerisk.t", "ScriptTransformation"),
        ("DROP TABLE issuerisk.t", "DropTable"),
        ("VACUUM issuerisk.runs RETAIN 0 HOURS", "VacuumTableCommand"),
    ],
)
def test_issuerisk_sql_through_serve_refuses_what_is_not_a_read_of_our_tables(served, statement, why):
    statement = statement.format(secret=served["secret"], warehouse=served["env"]["ISSUERISK_WAREHOUSE"])
    code, out, err = _finish(_cli(served["env"], "sql", statement), timeout=300)
    assert code == 1 and "ReadOnlyError" in err and why in err, err[-2000:]
    assert "metastore password" not in out


def test_a_read_through_serve_works_and_a_plain_view_is_read(served):
    code, out, err = _finish(
        _cli(served["env"], "sql", "SELECT a FROM issuerisk.v_ok ORDER BY a", "--format", "csv"), timeout=300
    )
    assert code == 0 and out.splitlines() == ["a", "1", "2"], err[-2000:]


def test_files_are_no_tables_even_for_a_client_that_skips_the_check(served):
    token = served["token_file"].read_text().strip()
    proc = _connect(served["port"], token, f"SELECT * FROM text.`{served['secret']}`")
    assert proc.returncode != 0 and "TABLE_OR_VIEW_NOT_FOUND" in proc.stderr and "metastore password" not in proc.stdout


def test_the_server_refuses_client_code_in_every_session_even_without_the_check(served):
    """A token holder's own Connect client, which never asks the check endpoint: Java calls, shell commands and Python
    functions are refused by the server's check rule (issuerisk.lakehouse.jvm_guard) before they run; reads work."""
    outcome = _attempts(served["port"], served["token_file"].read_text().strip())
    assert outcome.pop("plain_read") == "ran: [Row(a=1), Row(a=2)]"
    nodes = {
        "java_method": "CallMethodViaReflection",
        "reflect": "CallMethodViaReflection",
        "transform": "ScriptTransformation",
        "python_udf": "PythonUDF",
        "map_in_pandas": "MapInPandas",
        "view_calling_java": "CallMethodViaReflection",
        "create_view_calling_java": "CallMethodViaReflection",
    }
    for name, node in nodes.items():
        assert outcome[name].startswith(f"refused: (java.lang.SecurityException) issuerisk serve refuses {node}"), (
            name,
            outcome[name],
        )
    assert os.environ["HOME"] not in json.dumps(outcome)


def test_a_statement_past_the_timeout_is_cancelled(served):
    token = served["token_file"].read_text().strip()
    t0 = time.monotonic()
    proc = _connect(served["port"], token, "SELECT count(*) FROM range(0, 100000000000) WHERE id % 7 = 3")
    took = time.monotonic() - t0
    assert (
        proc.returncode != 0 and "SPARK_JOB_CANCELLED" in proc.stderr and "serve.statement_timeout_s" in proc.stderr
    ), proc.stderr[-2000:]
    assert took < STATEMENT_TIMEOUT_S + 60


def test_serve_refuses_a_public_address_and_an_unauthenticated_jdbc_server(tmp_path):
    env = {
        **_clean_env(),
        "ISSUERISK_WAREHOUSE": str(tmp_path / "wh"),
        "ISSUERISK__SERVE__TOKEN_FILE": str(tmp_path / "t"),
    }
    code, _, err = _finish(_cli(env, "serve", "--remote", "sc://0.0.0.0:15002"), timeout=120)
    assert code == 1 and "listens on the loopback interface only" in err and "--allow-remote" in err and "TLS" in err, (
        err[-2000:]
    )
    code, _, err = _finish(_cli(env, "serve", "--jdbc-port", str(_free_port())), timeout=120)
    assert code == 1 and "--jdbc-port needs an authentication mode for the Thrift JDBC server, got NONE" in err, err[
        -2000:
    ]


def test_terminal_markup_and_escape_sequences_in_issue_text_print_literally(capsys):
    from issuerisk.display import table

    table(
        "titles",
        ["title"],
        [
            ["Failed to load [/home/u/model.pt]"],
            ["[enforce fail at alloc.cpp:73]"],
            ["[link=https://evil.example]click[/link]"],
            ["copy \x1b]52;c;ZXZpbA==\x07me"],
        ],
    )
    out = capsys.readouterr().out
    assert "Failed to load [/home/u/model.pt]" in out and "[enforce fail at alloc.cpp:73]" in out
    assert "[link=https://evil.example]click[/link]" in out and "\x1b" not in out and "\x07" not in out


def test_the_ledger_records_the_connect_token_redacted(tmp_path):
    from issuerisk.conf import load_config

    cfg = load_config(
        environ={
            "ISSUERISK_WAREHOUSE": str(tmp_path),
            "ISSUERISK__SPARK__EXTRA__spark.connect.authenticate.token": "t" * 32,
        }
    )
    assert cfg.spark.extra["spark.connect.authenticate.token"] == "t" * 32
    assert json.loads(cfg.to_json())["spark"]["extra"]["spark.connect.authenticate.token"] == "<redacted>"


def test_the_connect_token_in_spark_extra_is_never_a_spark_setting_nor_overrides_the_servers(tmp_path, monkeypatch):
    """The factory leaves the token out of the SparkConf (spark-submit would put it on the JVM's command line) and out
    of the environment: only serve decides which token its JVM requires (ISSUERISK_SERVE_TOKEN first)."""
    from issuerisk.conf import load_config
    from issuerisk.lakehouse.connect_auth import SPARK_TOKEN_ENV, server_token
    from issuerisk.lakehouse.spark_session import builder_for

    monkeypatch.delenv(SPARK_TOKEN_ENV, raising=False)
    monkeypatch.setenv("ISSUERISK_SERVE_TOKEN", "e" * 32)
    cfg = load_config(
        environ={
            "ISSUERISK_WAREHOUSE": str(tmp_path),
            "ISSUERISK__SERVE__TOKEN_FILE": str(tmp_path / "t"),
            "ISSUERISK__SPARK__EXTRA__spark.connect.authenticate.token": "x" * 32,
        }
    )
    options = builder_for(cfg)._options
    assert "spark.connect.authenticate.token" not in options and "x" * 32 not in options.values()
    assert SPARK_TOKEN_ENV not in os.environ
    assert server_token(cfg) == "e" * 32 and (tmp_path / "t").read_text().strip() == "e" * 32
