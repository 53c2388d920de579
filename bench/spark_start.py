"""Benchmark: a cold driver JVM with and without its class archive (``issuerisk.lakehouse.class_archive``).

    .venv/bin/python -m bench.spark_start [--repeats 2]

Each line is a fresh process on a fresh warehouse, in order: the archive off; the machine's first start (it writes
the archive as its JVM exits, which is waited for); then ``--repeats`` starts that map it. Each times Spark's start
with the registration of every table in the catalog (what a first command on a warehouse pays), then the ingest and
filter stages on the real issues of ``bench.pipeline``'s small subset (17 repositories), and reads the CPU seconds
the JVM spent. The archive lives in a temporary folder, so this machine's own is not touched.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, os, sys
from pathlib import Path
from bench.ingest import ingest_and_filter, open_context
warehouse, data = Path(sys.argv[1]), Path(sys.argv[2])
ctx = open_context(warehouse)
got = ingest_and_filter(ctx, data)
proc = ctx.spark.sparkContext._gateway.proc
stat = Path(f"/proc/{proc.pid}/stat").read_text()
fields = stat[stat.rfind(")") + 2:].split()
jvm_cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
print(json.dumps({k: got[k] for k in ("start", "ingest", "filter")} | {"jvm_cpu": jvm_cpu, "pid": proc.pid}))
"""


def _small_subset(folder: Path) -> Path:
    from bench.pipeline import subsets

    folder.mkdir()
    for f in subsets()["small"]:
        (folder / f.name).symlink_to(f)
    return folder


def _measure(setting: str, tmp: Path, data: Path, archive_dir: Path, n: int) -> dict:
    env = {
        **os.environ,
        "ISSUERISK__SPARK__CLASS_ARCHIVE": "false" if setting == "off" else "true",
        "ISSUERISK__SPARK__CLASS_ARCHIVE_DIR": str(archive_dir),
    }
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp / f"wh-{setting}-{n}"), str(data)],
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise SystemExit(f"{setting}: {done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _wait_for_writer(pid: int, timeout_s: float = 300) -> float:
    """Seconds until the JVM ``pid`` has exited (it writes the archive as it exits)."""
    t0 = time.perf_counter()
    while os.path.exists(f"/proc/{pid}") and time.perf_counter() - t0 < timeout_s:
        time.sleep(0.5)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    from issuerisk.display import table

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-spark-start-") as name:
        tmp = Path(name)
        data, archive_dir = _small_subset(tmp / "data"), tmp / "jvm"
        plan = ["off", "first"] + ["mapped"] * args.repeats
        for n, setting in enumerate(plan):
            got = _measure(setting, tmp, data, archive_dir, n)
            note = ""
            if setting == "first":
                note = f"wrote the archive in {_wait_for_writer(got['pid']):.0f} s after the command ended"
                sizes = [p.stat().st_size for p in archive_dir.glob("*.partial")]
                note += f" ({sum(sizes) / 2**20:,.0f} MiB)"
            total = got["start"] + got["ingest"] + got["filter"]
            rows.append(
                [
                    setting,
                    f"{got['start']:.1f}",
                    f"{got['ingest']:.1f}",
                    f"{got['filter']:.1f}",
                    f"{total:.1f}",
                    f"{got['jvm_cpu']:.1f}",
                    note,
                ]
            )
    table(
        "cold driver JVM: class archive off, written, mapped (seconds; small real subset, 1,571 issues)",
        ["archive", "Spark start + register tables", "ingest", "filter", "total", "JVM CPU s", ""],
        rows,
    )


if __name__ == "__main__":
    main()
