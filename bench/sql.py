"""Ad hoc SQL end to end through ``issuerisk sql``: a cold command (its own Spark JVM) against a warm ``issuerisk
serve``.

Run ``.venv/bin/python -m bench.sql`` (``--warehouse DIR``, ``--repeat 3``, ``--port 15102``). The
warehouse needs ``gold_risk``: without one, ``bench/out/sql-warehouse`` is built first by ``issuerisk run``
on eight small repositories of the real issues (minutes, once). Each timing is the wall time of the whole
command as a user runs it (Python start, the run ledger, the query, the output):

* cold: ``issuerisk sql`` with ``spark.remote`` set but no server answering, so it starts its own JVM;
* warm: the same command while ``issuerisk serve`` runs on the same warehouse (Spark Connect, no JVM here);
* notebook: the query alone through a PySpark Connect session in this process (what a notebook waits for),
  which tells the server's share of the warm time from the command's own (Python start-up, imports, the ledger).

The target of issue 19: under 2 s warm. Both paths must print the same rows.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REAL_ISSUES = REPO.parent / "shared" / "data" / "lai2024-ml-issues" / "issues"
OUT = REPO / "bench" / "out"
REPOSITORIES = [
    "justinshenk__fer",
    "salesforce__decaNLP",
    "textpipe__textpipe",
    "waspinator__pycococreator",
    "XiaoMi__mobile-ai-bench",
    "mnicnc404__CartoonGan-tensorflow",
    "kLabUM__rrcf",
    "castorini__hedwig",
]
QUERY = (
    "SELECT scope, count(*) AS clusters, count(grade) AS graded FROM issuerisk.gold_risk "
    "WHERE run_id = (SELECT max(run_id) FROM issuerisk.gold_risk) GROUP BY scope ORDER BY scope"
)
SMALL_RUN = {
    "ISSUERISK__CLUSTER__CONSENSUS_RUNS": "3",
    "ISSUERISK__CLUSTER__MIN_CLUSTER_SIZE": "8",
    "ISSUERISK__KINDS__EVAL_FOLDS": "3",
    "ISSUERISK__RISK__BOOTSTRAP_ROUNDS": "30",
}


def issuerisk(env: dict[str, str], *args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "issuerisk.cli", "--no-progress", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def ensure_gold_risk(warehouse: Path, env: dict[str, str]) -> None:
    """Build a small warehouse with ``gold_risk`` when ``warehouse`` has none."""
    if (warehouse / "issuerisk.db" / "gold_risk" / "_delta_log").is_dir():
        return
    print(
        f"no gold_risk in {warehouse}: building it with issuerisk run on {len(REPOSITORIES)} small repositories "
        "(minutes, once)",
        flush=True,
    )
    files = [str(REAL_ISSUES / f"{name}.jsonl.gz") for name in REPOSITORIES]
    done = issuerisk({**env, **SMALL_RUN}, "run", *files, "--framework", "pytorch")
    if done.returncode != 0:
        sys.exit(f"bench.sql: issuerisk run failed:\n{done.stderr[-3000:]}")


def timed_sql(env: dict[str, str], repeat: int) -> tuple[list[float], str]:
    """Wall seconds of ``repeat`` ``issuerisk sql`` commands, and the rows the last one printed."""
    seconds, rows = [], ""
    for _ in range(repeat):
        t0 = time.perf_counter()
        done = issuerisk(env, "sql", QUERY, "--format", "csv", timeout=600)
        seconds.append(time.perf_counter() - t0)
        if done.returncode != 0:
            sys.exit(f"bench.sql: issuerisk sql failed:\n{done.stderr[-3000:]}")
        rows = done.stdout
    return seconds, rows


def timed_notebook(remote: str, repeat: int) -> list[float]:
    """Wall seconds of the query alone through one PySpark Connect session, ``repeat`` times."""
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.remote(remote).getOrCreate()
    seconds = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        spark.sql(QUERY).collect()
        seconds.append(time.perf_counter() - t0)
    spark.stop()
    return seconds


def start_server(env: dict[str, str], timeout_s: float = 600) -> tuple[subprocess.Popen, float]:
    """``issuerisk serve`` in the background, and the seconds until it said it serves."""
    t0 = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, "-m", "issuerisk.cli", "--no-progress", "serve"],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    deadline = time.monotonic() + timeout_s
    for line in server.stdout:
        if line.startswith("Spark Connect at"):
            return server, time.perf_counter() - t0
        if time.monotonic() > deadline:
            break
    server.kill()
    sys.exit(f"bench.sql: issuerisk serve did not come up (exit {server.poll()}); run it by hand to see why")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", type=Path, default=OUT / "sql-warehouse")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--port",
        type=int,
        default=15102,
        help="Spark Connect port of the warm server (the check endpoint uses the next one)",
    )
    args = parser.parse_args()

    env = {k: v for k, v in os.environ.items() if not k.startswith("ISSUERISK")}
    env.update(
        {
            "ISSUERISK_WAREHOUSE": str(args.warehouse.resolve()),
            "ISSUERISK__SPARK__REMOTE": f"sc://127.0.0.1:{args.port}",
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }
    )
    ensure_gold_risk(args.warehouse.resolve(), env)

    cold, cold_rows = timed_sql(env, args.repeat)
    server, startup = start_server(env)
    try:
        warm, warm_rows = timed_sql(env, args.repeat)
        notebook = timed_notebook(env["ISSUERISK__SPARK__REMOTE"], args.repeat)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=120)
    if warm_rows != cold_rows:
        sys.exit(f"bench.sql: the paths printed different rows:\ncold:\n{cold_rows}\nwarm:\n{warm_rows}")

    print(
        f"\nissuerisk sql end to end on {args.warehouse} ({len(cold_rows.splitlines()) - 1} rows), {args.repeat} runs "
        "each:"
    )
    print(f"{'path':<34}{'first s':>9}{'median s':>10}{'min s':>8}")
    for name, seconds in (
        ("cold (own Spark JVM)", cold),
        ("warm (issuerisk serve, Connect)", warm),
        ("notebook (query alone, Connect)", notebook),
    ):
        print(f"{name:<34}{seconds[0]:>9.2f}{statistics.median(seconds):>10.2f}{min(seconds):>8.2f}")
    print(f"{'issuerisk serve start-up':<34}{startup:>9.2f}")


if __name__ == "__main__":
    main()
