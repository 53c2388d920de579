"""The driver JVM's class archive: written by a machine's first start, checked, then mapped; a cut-off one or one
still being written is never mapped. The JVMs here are real ones (``java -version``), which write and map real
archives of the JDK's own classes in about a second."""

from __future__ import annotations

import subprocess
import sys

import pytest

from issuerisk.conf import load_config
from issuerisk.lakehouse import class_archive
from issuerisk.lakehouse.spark_session import builder_for

pytestmark = pytest.mark.skipif(class_archive.jdk_tool("java") is None, reason="no java on this machine")


def _cfg(tmp_path, **spark):
    environ = {
        "ISSUERISK_WAREHOUSE": str(tmp_path / "wh"),
        "ISSUERISK__SPARK__CLASS_ARCHIVE_DIR": str(tmp_path / "jvm"),
    }
    environ |= {f"ISSUERISK__SPARK__{k.upper()}": v for k, v in spark.items()}
    return load_config(environ=environ)


def _java(*options: str) -> subprocess.CompletedProcess:
    """A JVM with ``options`` and the class-data-sharing log, as Spark's driver would start with them."""
    return subprocess.run(
        [class_archive.jdk_tool("java"), *options, "-Xlog:cds=info", "-version"], capture_output=True, text=True
    )


def _option(options: list[str], name: str) -> str:
    (value,) = [o.split("=", 1)[1] for o in options if o.startswith(f"-XX:{name}=")]
    return value


def test_a_first_start_writes_the_archive_and_every_later_start_maps_it(tmp_path):
    cfg = _cfg(tmp_path)
    first = class_archive.java_options(cfg)
    partial = _option(first, "ArchiveClassesAtExit")
    assert partial.endswith(".partial") and partial.startswith(str(tmp_path / "jvm"))
    assert _java(*first).returncode == 0  # the JVM writes it as it exits

    later = class_archive.java_options(cfg)
    archive = _option(later, "SharedArchiveFile")
    assert archive.endswith(".jsa") and not any((tmp_path / "jvm").glob("*.partial"))
    mapped = _java(*later)
    assert mapped.returncode == 0 and f"Opened archive {archive}." in mapped.stdout
    assert class_archive.java_options(cfg) == later  # the same archive from then on


def test_an_archive_still_being_written_is_left_alone(tmp_path):
    cfg = _cfg(tmp_path)
    partial = _option(class_archive.java_options(cfg), "ArchiveClassesAtExit")
    with open(partial, "wb") as fh:
        fh.write(b"the first half of an archive")
    writer = subprocess.Popen(
        [sys.executable, "-c", "import time; print(flush=True); time.sleep(60)", f"-XX:ArchiveClassesAtExit={partial}"],
        stdout=subprocess.PIPE,
    )
    try:
        writer.stdout.readline()  # it runs, with the path on its command line
        assert class_archive.java_options(cfg) == []  # neither mapped nor a second writer
        assert (tmp_path / "jvm" / partial.rsplit("/", 1)[1]).exists()
    finally:
        writer.kill()
        writer.wait()
    options = class_archive.java_options(cfg)  # the writer is gone: the file is not an archive, so it goes
    assert _option(options, "ArchiveClassesAtExit") != partial
    assert not (tmp_path / "jvm" / partial.rsplit("/", 1)[1]).exists()


def test_a_cut_off_archive_is_deleted_not_mapped(tmp_path, monkeypatch):
    """A writer killed while it wrote leaves a cut-off archive, which crashes a JVM that maps it (SIGBUS); the check's
    crash leaves no report in the working folder."""
    monkeypatch.chdir(tmp_path)
    cfg = _cfg(tmp_path)
    partial = _option(class_archive.java_options(cfg), "ArchiveClassesAtExit")
    assert _java(f"-XX:ArchiveClassesAtExit={partial}").returncode == 0
    data = open(partial, "rb").read()
    with open(partial, "wb") as fh:
        fh.write(data[: len(data) // 2])
    options = class_archive.java_options(cfg)
    assert _option(options, "ArchiveClassesAtExit") != partial  # a fresh writer, not a crash
    assert not any((tmp_path / "jvm").glob("*.jsa"))
    assert not list(tmp_path.glob("hs_err*"))


def test_the_archive_joins_the_driver_options_and_can_be_turned_off(tmp_path):
    cfg = _cfg(tmp_path)
    options = class_archive.java_options(cfg)
    java = builder_for(cfg, options)._options["spark.driver.extraJavaOptions"]
    assert java.startswith(cfg.spark.driver_java_options) and " ".join(options) in java
    assert class_archive.java_options(_cfg(tmp_path, class_archive="false")) == []
    assert not any((tmp_path / "jvm").glob("*"))  # off writes nothing
