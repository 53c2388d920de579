"""A real cluster on one machine (``infra/local-cluster.sh``) gives the answer local mode gives.

The cluster is a Spark standalone master and worker, a Ray head and worker node and a Hive metastore in
PostgreSQL, each its own processes, on its own ports and state folder (so a cluster of the user's keeps
running). ``issuerisk run`` on eight small repositories of the real issues runs once in local mode and once on
the cluster, into two warehouses; silver, embeddings, labels and grades must agree, and the clustering's Ray
task must have run on the worker node. Then two ``issuerisk sql`` clients read the shared metastore while an
ingest writes, and ``down`` must leave no process or port behind.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from tests.test_replay import FIRST

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "infra" / "local-cluster.sh"
REPOS = FIRST[:8]
LATER = FIRST[8]
PORTS = {
    "SPARK_PORT": 17077,
    "SPARK_UI_PORT": 18080,
    "SPARK_WORKER_PORT": 17078,
    "SPARK_WORKER_UI_PORT": 18081,
    "RAY_PORT": 16379,
    "RAY_CLIENT_PORT": 20001,
    "PG_PORT": 15433,
    "CONNECT_PORT": 25002,
}
"""Ports of the test's cluster, away from the defaults a cluster of the user's listens on."""
CANNOT_START = (
    "there is no apt-get",
    "run as root once",
    "could not download the JDBC driver",
    "apt-get install postgresql failed",
)
"""What `up` says when this machine cannot have the cluster at all (the test skips, naming it)."""
SMALL_RUN = {
    "ISSUERISK__CLUSTER__CONSENSUS_RUNS": "3",
    "ISSUERISK__CLUSTER__MIN_CLUSTER_SIZE": "8",
    "ISSUERISK__CLUSTER__N_NEIGHBORS": "10",
    "ISSUERISK__KINDS__EVAL_FOLDS": "3",
    "ISSUERISK__RISK__BOOTSTRAP_ROUNDS": "30",
    "ISSUERISK__SPARK__SHUFFLE_PARTITIONS": "2",
    "ISSUERISK__SPARK__DRIVER_MEMORY": "1g",
    "ISSUERISK__EMBED__CPUS_PER_ACTOR": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("ISSUERISK", "RAY_AUTH", "SPARK_", "PYSPARK_"))}


def _script(env: dict[str, str], command: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), command], env=env, capture_output=True, text=True, timeout=timeout)


def _exports(text: str) -> dict[str, str]:
    """The variables `up` prints (``export K=V``), with ``"$(cat FILE)"`` read as the shell would."""
    found = {}
    for name, value in re.findall(r"^export ([A-Za-z_][A-Za-z0-9_]*)=(.*)$", text, flags=re.M):
        value = value.strip().strip("'")
        read = re.fullmatch(r'"\$\(cat (.+)\)"', value)
        found[name] = Path(read.group(1)).read_text().strip() if read else value
    return found


def _cli(env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "issuerisk.cli", "--no-progress", *args],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen, timeout: int = 900) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def _serving(env: dict[str, str]) -> subprocess.Popen:
    """``issuerisk serve`` under ``env``, once it says it serves (else the test fails with its error output)."""
    server = _cli(env, "serve")
    for line in server.stdout:
        if line.startswith("Spark Connect at"):
            break
    assert server.poll() is None, server.stderr.read()[-3000:]
    return server


def _sql_writes(env: dict[str, str], *statements: str) -> None:
    """Run each statement with ``issuerisk sql --write`` under ``env``; each must succeed."""
    for statement in statements:
        code, _, err = _finish(_cli(env, "sql", "--write", statement), timeout=300)
        assert code == 0, err[-3000:]


def _listening(ports: list[int]) -> list[str]:
    lines = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True).stdout.splitlines()
    return [line.split()[3] for line in lines if any(line.split()[3].endswith(f":{p}") for p in ports)]


@pytest.fixture(scope="module")
def cluster():
    """The test's own cluster: `up` (skipping where this machine cannot have one), then `down` and its state removed."""
    if not shutil.which("java") or not shutil.which("ss"):
        pytest.skip("the local cluster needs java and ss (iproute2)")
    state = tempfile.mkdtemp(prefix="irc-", dir="/tmp")  # short: Ray's socket paths must stay under 108 bytes
    env = {
        **_clean_env(),
        "ISSUERISK_CLUSTER_DIR": state,
        **{f"ISSUERISK_CLUSTER_{k}": str(v) for k, v in PORTS.items()},
    }
    t0 = time.perf_counter()
    up = _script(env, "up")
    startup_s = time.perf_counter() - t0
    if up.returncode != 0:
        _script(env, "purge")
        reason = next((r for r in CANNOT_START if r in up.stderr), None)
        if reason:
            pytest.skip(f"the local cluster cannot start here: {up.stderr.strip().splitlines()[-1]}")
        pytest.fail(f"infra/local-cluster.sh up failed:\n{up.stderr[-3000:]}")
    print(f"local cluster up in {startup_s:.1f} s")
    yield {"script_env": env, "exports": _exports(up.stdout), "state": state}
    _script(env, "purge")


def _answers(lake, run_id: str) -> tuple[dict, dict]:
    labels = {
        (r["repository"], r["number"]): r["cluster"]
        for r in lake.read("gold_clusters", where={"run_id": run_id}).to_pylist()
    }
    grades = {
        (r["scope"], r["cluster"]): r["grade"] for r in lake.read("gold_risk", where={"run_id": run_id}).to_pylist()
    }
    return labels, grades


def _vectors(lake) -> dict[tuple[str, int], np.ndarray]:
    return {
        (r["repository"], r["number"]): np.asarray(r["vector"], dtype=np.float32)
        for r in lake.read("gold_embeddings").to_pylist()
    }


def _latest(lake, command: str) -> dict:
    return max((r for r in lake.read("runs").to_pylist() if r["command"] == command), key=lambda r: r["started_at"])


@pytest.mark.cluster
@pytest.mark.slow
def test_a_run_on_the_local_cluster_gives_the_local_answer_and_sql_reads_while_a_run_writes(
    cluster, tmp_path, real_issues_dir
):
    from issuerisk.conf import load_config
    from issuerisk.lakehouse import ArrowTables

    files = [str(real_issues_dir / f"{name}.jsonl.gz") for name in REPOS]
    local_env = {
        **_clean_env(),
        **SMALL_RUN,
        "ISSUERISK_WAREHOUSE": str(tmp_path / "local"),
        "ISSUERISK__SPARK__MASTER": "local[2]",
        "ISSUERISK__RAY__NUM_CPUS": "2",
    }
    cluster_env = {**_clean_env(), **SMALL_RUN, **cluster["exports"], "ISSUERISK_WAREHOUSE": str(tmp_path / "cluster")}

    t0 = time.perf_counter()
    code, _, err = _finish(_cli(local_env, "run", *files, "--framework", "pytorch"))
    assert code == 0, err[-4000:]
    local_s = time.perf_counter() - t0
    code, _, err = _finish(_cli(cluster_env, "run", *files, "--framework", "pytorch"))
    assert code == 0, err[-4000:]
    print(f"issuerisk run: local {local_s:.0f} s, cluster {time.perf_counter() - t0 - local_s:.0f} s")

    local, remote = ArrowTables(load_config(environ=local_env)), ArrowTables(load_config(environ=cluster_env))
    local_run, remote_run = _latest(local, "run"), _latest(remote, "run")
    assert dict(remote_run["runtime"])["ray_address"] == cluster["exports"]["ISSUERISK__RAY__ADDRESS"]
    assert json.loads(remote_run["config_json"])["spark"]["master"] == cluster["exports"]["ISSUERISK__SPARK__MASTER"]

    assert remote.read("silver_issues").num_rows == local.read("silver_issues").num_rows > 200
    near, far = _vectors(local), _vectors(remote)
    assert near.keys() == far.keys()
    worst = max(float(np.max(np.abs(near[k] - far[k]))) for k in near)
    assert worst <= 1e-4, f"embeddings differ by up to {worst}"
    labels, grades = _answers(local, local_run["run_id"])
    assert len(set(labels.values())) > 2 and any(grades.values())
    assert _answers(remote, remote_run["run_id"]) == (labels, grades)

    # the clustering's coordinating Ray task ran on the worker node (the head has no CPUs for tasks)
    where = json.loads(remote_run["metrics_json"])["cluster"]
    nodes = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, ray; ray.init(address=__import__('os').environ['ISSUERISK__RAY__ADDRESS'], "
            "log_to_driver=False, configure_logging=False); print(json.dumps([(n['NodeID'], n['Resources'].get('CPU', "
            "0)) "
            "for n in ray.nodes() if n['Alive']]))",
        ],
        env=cluster_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert nodes.returncode == 0, nodes.stderr[-2000:]
    workers = [node for node, cpus in json.loads(nodes.stdout.strip().splitlines()[-1]) if cpus > 0]
    assert len(workers) == 1 and where["node_id"] == workers[0], (where, nodes.stdout)

    # two sql clients on the shared metastore while an ingest writes through it
    writer = _cli(cluster_env, "ingest", str(real_issues_dir / f"{LATER}.jsonl.gz"), "--framework", "pytorch")
    time.sleep(5)
    readers = [
        _cli(cluster_env, "sql", "SELECT count(*) AS n FROM issuerisk.silver_issues", "--format", "json"),
        _cli(cluster_env, "sql", "SHOW TABLES IN issuerisk", "--format", "csv"),
    ]
    results = [_finish(p) for p in readers] + [_finish(writer)]
    for code, _, err in results:
        assert code == 0, err[-4000:]
    assert json.loads(results[0][1].strip().splitlines()[-1]) == {"n": local.read("silver_issues").num_rows}
    assert "silver_issues" in results[1][1] and "gold_risk" in results[1][1]
    rows = {r["command"]: r for r in remote.read("runs").to_pylist() if r["started_at"] > remote_run["started_at"]}
    sql_rows = [r for r in remote.read("runs").to_pylist() if r["command"] == "sql"]
    assert len(sql_rows) == 2 and rows["ingest"]["status"] == "succeeded"
    assert all(
        r["started_at"] < rows["ingest"]["ended_at"] and rows["ingest"]["started_at"] < r["ended_at"] for r in sql_rows
    ), "the sql clients did not overlap the ingest"


@pytest.mark.cluster
@pytest.mark.slow
def test_serve_on_the_cluster_shows_no_secret_and_the_master_refuses_an_application_without_the_secret(
    cluster, tmp_path
):
    env = {
        **_clean_env(),
        **cluster["exports"],
        "ISSUERISK_WAREHOUSE": str(tmp_path / "served"),
        "ISSUERISK__SPARK__DRIVER_MEMORY": "1g",
        "ISSUERISK__SERVE__TOKEN_FILE": str(tmp_path / "serve.token"),
    }
    secrets = {
        "metastore password": cluster["exports"]["ISSUERISK_METASTORE_PASSWORD"],
        "Spark secret": cluster["exports"]["ISSUERISK_SPARK_AUTH_SECRET"],
    }
    assert all(len(value) >= 16 for value in secrets.values())
    server = _serving(env)
    try:
        code, out, err = _finish(
            _cli(env, "sql", "SELECT count(*) AS n FROM issuerisk.runs", "--format", "csv"), timeout=300
        )
        assert code == 0, err[-3000:]
        secrets["Connect token"] = (tmp_path / "serve.token").read_text().strip()
        commands = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        assert [name for name, value in secrets.items() if value in commands] == []
    finally:
        server.send_signal(signal.SIGTERM)
        _finish(server, timeout=120)
    stranger = (
        "from pyspark.sql import SparkSession\n"
        f"s = SparkSession.builder.master('{cluster['exports']['ISSUERISK__SPARK__MASTER']}')"
        ".config('spark.ui.enabled', 'false').getOrCreate()\n"
        "print('ran', s.range(3).count())"
    )
    try:
        proc = subprocess.run(
            [sys.executable, "-c", stranger], env=_clean_env(), capture_output=True, text=True, timeout=150
        )
        ran = "ran 3" in proc.stdout
    except subprocess.TimeoutExpired as exc:
        ran = (
            "ran 3" in (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else "ran 3" in (exc.stdout or "")
        )
    assert not ran, "an application without the cluster's secret ran on its master"


@pytest.mark.cluster
@pytest.mark.slow
def test_down_leaves_no_process_or_port(cluster):
    down = _script(cluster["script_env"], "down")
    assert down.returncode == 0, down.stderr
    assert _listening(list(PORTS.values())) == []
    status = _script(cluster["script_env"], "status")
    assert status.returncode == 1 and status.stdout.count(" down ") == 5, status.stdout
    left = subprocess.run(["pgrep", "-f", cluster["state"]], capture_output=True, text=True).stdout.split()
    assert left == [], f"processes of the cluster still run: {left}"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_sql_runs_on_a_warm_serve_behind_the_same_read_only_check_and_falls_back_without_it(tmp_path):
    """No cluster needed: a local ``issuerisk serve`` on an embedded metastore."""
    port = _free_port()
    env = {
        **_clean_env(),
        "ISSUERISK_WAREHOUSE": str(tmp_path / "wh"),
        "ISSUERISK__SPARK__MASTER": "local[1]",
        "ISSUERISK__SPARK__DRIVER_MEMORY": "1g",
        "ISSUERISK__SPARK__SHUFFLE_PARTITIONS": "2",
        "ISSUERISK__SPARK__REMOTE": f"sc://127.0.0.1:{port}",
        "ISSUERISK__SERVE__TOKEN_FILE": str(tmp_path / "serve.token"),
    }
    server = _serving(env)
    try:
        bound = _listening([port, port + 1])
        assert len(bound) == 2 and all(a.rsplit(":", 1)[0] in ("127.0.0.1", "[::ffff:127.0.0.1]") for a in bound), bound
        _sql_writes(
            env,
            "CREATE TABLE issuerisk.t (a INT, b STRING) USING delta",
            "INSERT INTO issuerisk.t VALUES (1, 'x'), (2, 'y')",
        )
        t0 = time.perf_counter()
        code, warm, err = _finish(
            _cli(env, "sql", "SELECT a, b FROM issuerisk.t ORDER BY a", "--format", "csv"), timeout=300
        )
        warm_s = time.perf_counter() - t0
        assert code == 0 and warm.splitlines() == ["a,b", "1,x", "2,y"], err[-3000:]
        code, _, err = _finish(_cli(env, "sql", "DELETE FROM issuerisk.t WHERE a = 1"), timeout=300)
        assert (
            code == 1
            and (
                "issuerisk sql: ReadOnlyError: refused 'DELETE FROM issuerisk.t WHERE a = 1': its plan has "
                "DeleteFromTable, "
                "which is neither a query nor SHOW, DESCRIBE or EXPLAIN"
            )
            in err
        ), err[-3000:]
        code, _, err = _finish(_cli(env, "sql", "SELECT reflect('java.lang.System', 'exit', 1)"), timeout=300)
        assert code == 1 and "it calls reflect(), which runs Java methods" in err, err[-3000:]
        code, _, err = _finish(_cli(env, "sql", "SELEC 1"), timeout=300)
        assert code == 1 and "PARSE_SYNTAX_ERROR" in err and "'SELEC'" in err, err[-3000:]
    finally:
        server.send_signal(signal.SIGTERM)
        code, _, err = _finish(server, timeout=120)
    assert code == 0, err[-3000:]
    print(f"warm issuerisk sql: {warm_s:.2f} s")

    from deltalake import DeltaTable

    from issuerisk.conf import load_config
    from issuerisk.lakehouse import ArrowTables

    lake = ArrowTables(load_config(environ=env))
    runs = {r["command"]: r for r in lake.read("runs").to_pylist()}
    assert runs["serve"]["status"] == "succeeded"
    assert (
        DeltaTable(str(tmp_path / "wh" / "issuerisk.db" / "t")).to_pyarrow_table().num_rows == 2
    )  # the refused DELETE changed nothing
    code, cold, err = _finish(
        _cli(env, "sql", "SELECT a, b FROM issuerisk.t ORDER BY a", "--format", "csv"), timeout=600
    )
    assert code == 0 and cold == warm, err[-3000:]
    sql_rows = sorted(
        (r for r in lake.read("runs").to_pylist() if r["command"] == "sql" and r["status"] == "succeeded"),
        key=lambda r: r["started_at"],
    )
    assert "spark_remote" in dict(sql_rows[0]["runtime"]) and "spark_remote" not in dict(sql_rows[-1]["runtime"])
