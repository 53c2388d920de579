"""Issue 15's check, script-like: bad records, a broken token pair, a ``javascript:`` link, a write through ``sql``,
a badly shaped config and a SIGTERM mid-run, each fed to the real ``issuerisk`` command in its own process (SYNTHETIC
data).

Expected: exit 0 where the input is partly good, every good record in bronze, every bad one in
``bronze_rejects`` with its reason, no secret in any output or table, no ``javascript:`` href in the
report, the write refused, a ``ConfigError`` line instead of a traceback, and no ``running`` row left behind.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.github_objects import issue

pytestmark = pytest.mark.slow

REPO = "synthetic/badinputs"
TOKENS = "ghp_syntheticTokenAAAA1111\nghp_syntheticTokenBBBB2222"


def good(n: int) -> dict:
    return issue(
        REPO,
        n,
        f"Crash number {n} when training",
        f"The trainer crashes with a long enough English sentence, case {n}.",
    )


def line(obj: dict) -> bytes:
    return json.dumps(obj).encode() + b"\n"


# One file per broken record (what each must become), and one file mixing them with valid records.
BROKEN: dict[str, tuple[bytes, str]] = {
    "surrogate.jsonl": (line(good(1)).replace(b"Crash number 1", b"Crash \\ud800 number 1"), "bad_text"),
    "huge_id.jsonl": (line({**good(2), "id": 2**63}), "out_of_range"),
    "numeric_label.jsonl": (line({**good(3), "labels": [{"name": 5}]}), "wrong_type"),
    "integer_login.jsonl": (line({**good(4), "user": {"login": 7, "type": "User"}}), "wrong_type"),
    "year_one.jsonl": (line({**good(5), "created_at": "0001-01-01T00:00:00+01:00"}), "out_of_range"),
    "bad_utf8.jsonl": (line(good(6)).replace(b"Crash number 6", b"Crash \xff\xfe number 6"), "bad_encoding"),
    "javascript.jsonl": (line({**good(7), "html_url": "javascript:alert(document.domain)"}), "bad_url"),
    "empty.jsonl": (b"", "empty_file"),
}


def _env(wh: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ISSUERISK", "GITHUB_TOKEN"))}
    env.update(
        {
            "ISSUERISK_WAREHOUSE": str(wh),
            "ISSUERISK__SPARK__MASTER": "local[2]",
            "ISSUERISK__SPARK__SHUFFLE_PARTITIONS": "2",
            "ISSUERISK__SPARK__DRIVER_MEMORY": "1g",
            "PYTHONUNBUFFERED": "1",
            **extra,
        }
    )
    return env


def cli(wh: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "issuerisk.cli", "--no-progress", *args],
        env=env or _env(wh),
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_bad_inputs_are_rejected_refused_or_redacted_and_nothing_is_left_running(tmp_path):
    from issuerisk.conf import load_config
    from issuerisk.lakehouse import ArrowTables

    data = tmp_path / "in"
    data.mkdir()
    for name, (content, _) in BROKEN.items():
        (data / name).write_bytes(content)
    (data / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + line(good(8)))
    mixed = b"".join([line(good(n)) for n in range(20, 30)] + [content for content, _ in BROKEN.values()])
    (data / "mixed.jsonl.gz").write_bytes(gzip.compress(mixed))
    wh = tmp_path / "wh"
    lake = ArrowTables(load_config(environ={"ISSUERISK_WAREHOUSE": str(wh)}))

    ingest = cli(wh, "ingest", str(data))
    assert ingest.returncode == 0, ingest.stderr[-3000:]
    bronze = {(r["source_file"].rsplit("/", 1)[-1], r["number"]) for r in lake.read("bronze_issues").to_pylist()}
    assert ("bom.jsonl", 8) in bronze and {n for f, n in bronze if f == "mixed.jsonl.gz"} == set(range(20, 30))
    rejects = lake.read("bronze_rejects").to_pylist()
    per_file = {
        r["source_file"].rsplit("/", 1)[-1]: r["reason"] for r in rejects if not r["source_file"].endswith(".gz")
    }
    assert per_file == {name: reason for name, (_, reason) in BROKEN.items()}
    in_mixed = sorted(r["reason"] for r in rejects if r["source_file"].endswith("mixed.jsonl.gz"))
    assert in_mixed == sorted(reason for _, reason in BROKEN.values() if reason != "empty_file")
    assert all(r["detail"] for r in rejects)

    crawl = cli(wh, "crawl", "--repo", "synthetic/repo", "--no-ingest", env=_env(wh, GITHUB_TOKENS=TOKENS))
    assert crawl.returncode == 1 and "GITHUB_TOKENS holds a newline" in crawl.stderr

    write = cli(wh, "sql", "DELETE FROM issuerisk.bronze_rejects")
    assert write.returncode == 1 and "ReadOnlyError" in write.stderr and "--write" in write.stderr
    assert lake.read("bronze_rejects").num_rows == len(rejects)

    shape = cli(wh, "runs", env=_env(wh, ISSUERISK__SPARK__MASTER__X="1"))
    assert shape.returncode == 2
    assert (
        shape.stderr.startswith("issuerisk: invalid configuration")
        and "ISSUERISK__SPARK__MASTER__X" in shape.stderr
        and "Traceback" not in shape.stderr
    )

    stopped = subprocess.Popen(
        [sys.executable, "-m", "issuerisk.cli", "--no-progress", "run", str(data), "--sample", "5"],
        env=_env(wh),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while (
        not any(r["status"] == "running" and r["command"] == "run" for r in lake.read("runs").to_pylist())
        and time.monotonic() < deadline
    ):
        time.sleep(0.2)
    stopped.send_signal(signal.SIGTERM)
    _, err = stopped.communicate(timeout=120)
    assert stopped.returncode == 128 + signal.SIGTERM and "interrupted by SIGTERM" in err

    report = _report_with_a_javascript_link(wh, lake)
    html = report.read_text()
    assert "javascript:alert" in html and 'href="javascript' not in html.lower()

    runs = lake.read("runs").to_pylist()
    assert not [r for r in runs if r["status"] == "running"]
    everything = " ".join(
        [
            ingest.stdout,
            ingest.stderr,
            crawl.stdout,
            crawl.stderr,
            write.stderr,
            shape.stderr,
            err,
            html,
            json.dumps(runs, default=str),
        ]
    )
    for secret in TOKENS.split("\n"):
        assert secret not in everything


def _report_with_a_javascript_link(wh: Path, lake) -> Path:
    """The gold rows of one synthetic run whose representative issue links to ``javascript:``, then ``issuerisk
    report``."""
    import pyarrow as pa

    from issuerisk.schemas.gold import GOLD_CLUSTERS, GOLD_RISK, GOLD_TOPICS

    run_id = "20260101T000000Z-javascript"
    lake.merge(
        GOLD_CLUSTERS,
        pa.Table.from_pylist(
            [
                {
                    "repository": REPO,
                    "number": 1,
                    "cluster": 0,
                    "probability": 1.0,
                    "outlier_score": 0.0,
                    "x": 0.0,
                    "y": 0.0,
                    "model": "m",
                    "run_id": run_id,
                }
            ],
            schema=GOLD_CLUSTERS.arrow,
        ),
    )
    lake.merge(
        GOLD_TOPICS,
        pa.Table.from_pylist(
            [
                {
                    "cluster": 0,
                    "label": "crash",
                    "keywords": ["crash"],
                    "weights": [1.0],
                    "n": 1,
                    "run_id": run_id,
                    "representative": ["javascript:alert(document.domain)"],
                }
            ],
            schema=GOLD_TOPICS.arrow,
        ),
    )
    lake.merge(
        GOLD_RISK,
        pa.Table.from_pylist(
            [
                {
                    "run_id": run_id,
                    "scope": "all",
                    "cluster": 0,
                    "n": 1,
                    "p_k": 1.0,
                    "likelihood": "P4",
                    "open_share": 0.0,
                    "impact": "I1",
                    "grade": "H1",
                    "action": "act",
                }
            ],
            schema=GOLD_RISK.arrow,
        ),
    )
    out = wh / "report.html"
    result = cli(wh, "report", run_id, "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    return out
