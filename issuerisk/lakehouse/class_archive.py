"""The driver JVM's class archive: Spark's and Delta's classes loaded and verified once per machine, then mapped.

A cold driver JVM spends much of its start loading, parsing and verifying the classes of Spark, Delta,
Hive and their libraries, on every command. Java's application class-data sharing (CDS, JDK 13 and later)
keeps them in an archive the next JVM maps instead (``python -m bench.spark_start`` measures the difference). The
archive is a per-machine cache, like the ONNX export and the kinds model, under ``spark.class_archive_dir``
(default ``~/.cache/issuerisk/jvm``), named by a hash of the JVM and of what is on Spark's class path:

* no archive for this key yet: this JVM runs with ``-XX:ArchiveClassesAtExit`` and writes one as it exits (a
  *partial* file, named by this process's id);
* a later start finds the partial, checks that no JVM is still writing it (no process's command line names it) and
  that a JVM can map it (``java -version`` with it: a cut-off archive crashes a JVM, so one that does not pass is
  deleted), and renames it to the archive;
* from then on every driver JVM starts with ``-XX:SharedArchiveFile``.

A JVM that finds the archive does not fit (another JDK build, another class path) runs without it, silently, as
``-Xshare:auto`` does. ``spark.class_archive: false`` turns all of this off.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import uuid
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from issuerisk.conf import Config

QUIET = "-Xlog:cds*=off"
"""CDS's own log lines (classes it cannot archive, e.g. those of Java 5 and older) stay out of the command's output."""
CHECK_TIMEOUT_S = 30


def jdk_tool(name: str) -> str | None:
    """A JDK program (``java``, ``javac``) as Spark's launcher finds it: in ``$JAVA_HOME/bin``, else on ``PATH``."""
    home = os.environ.get("JAVA_HOME")
    return shutil.which(
        name, path=os.pathsep.join(p for p in (home and os.path.join(home, "bin"), os.environ.get("PATH")) if p)
    )


def archive_key(cfg: Config, java: str) -> str:
    """What the archive depends on: the JVM binary, the pyspark and Delta versions and every jar setting."""
    import pyspark

    try:
        delta = version("delta-spark")
    except PackageNotFoundError:  # jars from spark.jars_dir
        delta = ""
    real = os.path.realpath(java)
    stat = os.stat(real)
    s = cfg.spark
    parts = [
        real,
        str(stat.st_size),
        str(int(stat.st_mtime)),
        pyspark.__version__,
        delta,
        *s.packages,
        s.jars_dir or "",
        *s.driver_class_path,
        s.extra.get("spark.jars", ""),
    ]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def _being_written(partial: Path) -> bool:
    """A running process names ``partial`` on its command line: the JVM that writes it as it exits."""
    needle = str(partial).encode()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as fh:
                    if needle in fh.read():
                        return True
            except OSError:
                continue
    return False


def _maps(java: str, archive: Path) -> bool:
    """A JVM opens ``archive`` and starts (``java -version``): a cut-off archive crashes it (its crash report goes
    nowhere, not to an ``hs_err`` file in the working folder), a file that is no archive is not opened."""
    try:
        done = subprocess.run(
            [java, f"-XX:SharedArchiveFile={archive}", "-Xlog:cds=info", "-XX:ErrorFile=/dev/null", "-version"],
            capture_output=True,
            text=True,
            timeout=CHECK_TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and f"Opened archive {archive}." in done.stdout


def java_options(cfg: Config) -> list[str]:
    """The driver JVM's options for its class archive: map the archive, or write it at exit, or none.

    None when ``spark.class_archive`` is off, no ``java`` is found (Spark's own start names that), the machine has
    no ``/proc`` to tell a running writer, or another JVM is writing this key's archive now.
    """
    if not cfg.spark.class_archive or not os.path.isdir("/proc"):
        return []
    java = jdk_tool("java")
    if java is None:
        return []
    folder = Path(cfg.cache_dir(cfg.spark.class_archive_dir, "jvm"))
    key = archive_key(cfg, java)
    archive = folder / f"spark-{key}.jsa"
    writing = False
    for partial in sorted(folder.glob(f"spark-{key}.*.partial")):
        if _being_written(partial):
            writing = True
        elif not archive.exists() and _maps(java, partial):  # an empty or cut-off file fails here
            try:
                partial.replace(archive)
            except FileNotFoundError:  # another start adopted it first
                pass
        else:
            partial.unlink(missing_ok=True)
    if archive.exists():
        return [f"-XX:SharedArchiveFile={archive}", QUIET]
    if writing:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f"spark-{key}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial"
    return [f"-XX:ArchiveClassesAtExit={partial}", QUIET]
