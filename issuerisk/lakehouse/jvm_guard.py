"""The serve JVM's code guard: a Spark session extension, compiled once per machine, that refuses plans running client
code.

``issuerisk serve`` adds :data:`GUARD_CLASS` to ``spark.sql.extensions`` and its jar to the driver's class path; from
then on
every session of that JVM (Connect, the check endpoint, JDBC) refuses ``SELECT TRANSFORM``, ``java_method``/``reflect``,
Python UDFs of every kind and functions whose classes a client shipped, at analysis, before anything runs. The source is
``jvm/NoCodeGuard.java`` beside this module; it is compiled with the JDK's ``javac`` against pyspark's own jars and kept
under this user's cache folder by the hash of source and Spark version, so only the first serve of a machine pays
(about 5 s).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
import zipfile
from pathlib import Path

from issuerisk.lakehouse.class_archive import jdk_tool

GUARD_CLASS = "issuerisk.spark.NoCodeGuard"
SOURCE = Path(__file__).with_name("jvm") / "NoCodeGuard.java"


class GuardBuildError(RuntimeError):
    """The code guard could not be compiled."""


def spark_jars() -> Path:
    """pyspark's own jars: what the guard compiles against and what the server runs."""
    import pyspark

    return Path(pyspark.__file__).parent / "jars"


def guard_jar(cache_dir: str) -> Path:
    """The guard's jar under ``cache_dir``, compiled first if this source and Spark version have none yet.

    Raises:
        GuardBuildError: no ``javac`` (a JRE without the JDK) or the compiler failed.
    """
    import pyspark

    digest = hashlib.sha256(SOURCE.read_bytes() + pyspark.__version__.encode()).hexdigest()[:16]
    jar = Path(cache_dir) / f"issuerisk-guard-{digest}.jar"
    if jar.exists():
        return jar
    javac = jdk_tool("javac")
    if not javac:
        raise GuardBuildError(
            "issuerisk serve compiles its code guard with javac, which is not on PATH nor in $JAVA_HOME/bin: "
            "install a JDK 17 (apt install openjdk-17-jdk-headless), not only the JRE"
        )
    with tempfile.TemporaryDirectory(prefix="issuerisk-guard-") as tmp:
        done = subprocess.run(
            [javac, "-nowarn", "-cp", str(spark_jars() / "*"), "-d", tmp, str(SOURCE)], capture_output=True, text=True
        )
        if done.returncode:
            raise GuardBuildError(
                f"javac could not compile {SOURCE} against {spark_jars()}: {done.stderr.strip()[-2000:]}"
            )
        jar.parent.mkdir(parents=True, exist_ok=True)
        partial = jar.with_suffix(f".{os.getpid()}.part")
        with zipfile.ZipFile(partial, "w") as out:
            out.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\n")
            for cls in sorted(Path(tmp).rglob("*.class")):
                out.write(cls, cls.relative_to(tmp).as_posix())
        partial.replace(jar)
    return jar
