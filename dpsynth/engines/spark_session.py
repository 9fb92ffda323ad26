"""The Spark engine's session: one per process, local mode or a ``spark://`` cluster, started on first use.

Starting Spark launches a JVM (``spark-submit`` under pyspark), which takes
seconds, so the session is made once and kept for the process. Local
masters get settings that suit one machine: few shuffle partitions (the
default 200 makes every small ``GROUP BY`` schedule 200 tasks), no web UI,
the loopback address. A ``spark://`` master keeps the cluster's own
defaults (``spark-defaults.conf``), with adaptive execution to size the
shuffles. Logging is quieted to errors; Spark's own messages about the
JVM remain on stderr.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any

from dpsynth.errors import UsageError

#: Local mode on two cores: the CI machine's size; ``--spark-master local[*]`` takes every core.
DEFAULT_MASTER = "local[2]"
_LOCAL = re.compile(r"local(\[(\d+|\*)\])?")
_CLUSTER = re.compile(r"spark://[A-Za-z0-9_.\-\[\]:]+(,[A-Za-z0-9_.\-\[\]:]+)*/?")
_QUIET_LOG4J = """\
rootLogger.level = error
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss} %p %c{1}: %m%n
"""

_session: Any = None
_session_master: str | None = None


def check_master(master: str) -> str:
    """``master`` when it is a local master (``local``, ``local[N]``, ``local[*]``) or ``spark://HOST:PORT``."""
    if _LOCAL.fullmatch(master) or _CLUSTER.fullmatch(master):
        return master
    raise UsageError(
        f"--spark-master must be local, local[N], local[*] or spark://HOST:PORT, got {master!r}",
        parameter="spark_master",
    )


def java_command() -> str | None:
    """The ``java`` Spark will run (``$JAVA_HOME/bin/java``, else the one on ``PATH``), or None."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    return shutil.which("java")


def _local_cores(master: str) -> int:
    inside = master[len("local[") : -1] if master.startswith("local[") else "1"
    return (os.cpu_count() or 1) if inside == "*" else int(inside)


def _quiet_log_config() -> Path:
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"dpsynth-spark-log4j2-{os.getuid()}.properties"
    if not path.exists() or path.read_text() != _QUIET_LOG4J:
        path.write_text(_QUIET_LOG4J)
    return path


def spark_session(master: str | None = None) -> Any:
    """The process's :class:`pyspark.sql.SparkSession` on ``master`` (a different master restarts it)."""
    global _session, _session_master
    master = check_master(master or DEFAULT_MASTER)
    if _session is not None and _session_master == master:
        return _session
    if java_command() is None:
        raise UsageError(
            "the spark engine needs Java 17 or newer: no java on PATH and JAVA_HOME is not set "
            "(Debian: apt-get install openjdk-17-jre-headless)",
            parameter="engine",
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # pyspark's note on pandas 3; dpsynth passes it Arrow only
        from pyspark.sql import SparkSession
    if _session is not None:
        _session.stop()
    # HotSpot never compiles a method over 8000 bytecodes; the encoding query's generated code has
    # such methods (a CASE tree per column), which would then run interpreted, several times slower
    log = f"-Dlog4j2.configurationFile=file:{_quiet_log_config()} -XX:-DontCompileHugeMethods"
    builder = (
        SparkSession.builder.master(master)
        .appName("dpsynth")
        .config("spark.driver.extraJavaOptions", log)
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.adaptive.enabled", "true")
    )
    if master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        # the Python workers (the audits' searches run there) use this interpreter, which has dpsynth
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        cores = _local_cores(master)
        builder = (
            builder.config("spark.sql.shuffle.partitions", str(max(2, cores)))
            .config("spark.default.parallelism", str(max(2, cores)))
            .config("spark.ui.enabled", "false")
            .config("spark.driver.memory", os.environ.get("DPSYNTH_SPARK_DRIVER_MEMORY", "2g"))
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        _session = builder.getOrCreate()
    _session.sparkContext.setLogLevel("ERROR")
    _session_master = master
    return _session


def stop_session() -> None:
    """Stop the process's session, if one was started (its JVM exits)."""
    global _session, _session_master
    if _session is not None:
        _session.stop()
    _session, _session_master = None, None


def map_in_arrow(frame: Any, function: Any, schema: str) -> Any:
    """``frame.mapInArrow(function, schema)``, without pyspark's notice on pandas 3 (only Arrow crosses)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return frame.mapInArrow(function, schema)


__all__ = ["DEFAULT_MASTER", "check_master", "java_command", "map_in_arrow", "spark_session", "stop_session"]
