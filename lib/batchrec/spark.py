"""The only SparkSession factory. Nothing here starts a JVM at import time.

Two situations:

* **Embedded** (``batchrec ...`` or ``python jobs/x.py``): we launch the JVM ourselves with the
  configured master and memory, Delta's SQL extension and catalog, and delta-spark's jars resolved
  by Spark's own package resolution from Maven Central into a writable Ivy cache. If that cannot
  resolve (a proxy Ivy dislikes, a locked cache), we fall back to resolving the same jars with
  Maven into ``<cache>/jars`` and pass them as plain jars.
* **Under spark-submit** the JVM already exists and owns the configuration (``--packages``,
  ``--conf``, master); we only get the session and set the Delta options that are session-level.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional

from batchrec.config import SparkSettings
from batchrec.errors import JobError

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"
DELTA_SNAPSHOT_PARTITIONS = "spark.databricks.delta.snapshotPartitions"
CACHE_DIR_ENV = "BATCHREC_CACHE_DIR"
# Set by spark-submit for the Python driver it launches: the JVM is already up.
SPARK_SUBMIT_GATEWAY_ENV = "PYSPARK_GATEWAY_PORT"
LOG4J_FILE = Path(__file__).with_name("log4j2.properties")
# Spark loggers that repeat a task's failure (one line each on the console, see log4j2.properties).
TASK_FAILURE_LOGGERS = ("org.apache.spark.executor.Executor", "org.apache.spark.scheduler.TaskSetManager")


def cache_dir() -> Path:
    """Folder for resolved jars (Ivy and Maven fallback); ``$BATCHREC_CACHE_DIR`` or ~/.cache/batchrec."""
    root = os.environ.get(CACHE_DIR_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "batchrec")
    return Path(root)


def under_spark_submit() -> bool:
    """True when this Python process was started by spark-submit (the JVM already exists)."""
    return SPARK_SUBMIT_GATEWAY_ENV in os.environ


def delta_coordinates() -> list[str]:
    """Maven coordinates of the delta-spark jars matching the installed delta-spark wheel."""
    from importlib.metadata import version

    delta_version = version("delta-spark")
    major_minor = tuple(int(p) for p in delta_version.split(".")[:2])
    if major_minor >= (4, 1):
        import pyspark

        spark_mm = ".".join(pyspark.__version__.split(".")[:2])
        artifact = f"delta-spark_{spark_mm}_2.13"
    else:
        artifact = "delta-spark_2.13" if major_minor >= (4, 0) else "delta-spark_2.12"
    return [f"io.delta:{artifact}:{delta_version}", f"io.delta:delta-storage:{delta_version}"]


def cached_delta_jars() -> list[str]:
    """The delta-spark jars (with their dependencies) an earlier embedded run resolved into the cache
    (Ivy's, or the Maven fallback's), or [] when none was resolved yet. ``spark-submit.sh
    --ship-jars`` passes them with ``--jars`` to clusters without Maven access."""
    cached = _cached_jars(_manifest_path(delta_coordinates()))
    if cached:
        return cached
    maven = cache_dir() / "jars"
    return sorted(str(p) for p in maven.glob("*.jar")) if maven.is_dir() else []


def get_spark(settings: SparkSettings) -> "SparkSession":
    """Return the SparkSession for this process, creating it if needed.

    Args:
        settings: master, memory, shuffle partitions, extra packages and conf for embedded runs.

    Raises:
        JobError: the JVM could not start (no Java 17, or the Delta jars could not be resolved).
    """
    from pyspark.sql import SparkSession

    if under_spark_submit():
        spark = SparkSession.builder.appName(settings.app_name).getOrCreate()
    else:
        coordinates = delta_coordinates() + list(settings.packages)
        manifest = _manifest_path(coordinates)
        cached = _cached_jars(manifest)
        if cached:
            # Resolved before: skip Ivy (its report is noisy and it needs the network to check).
            spark = _embedded_session(settings, jars=cached)
        else:
            try:
                spark = _embedded_session(settings, packages=coordinates)
                resolved = spark.conf.get("spark.jars", "")
                if resolved:
                    manifest.parent.mkdir(parents=True, exist_ok=True)
                    manifest.write_text(resolved.replace(",", "\n"))
            except Exception as first:  # the JVM failed to start; most often package resolution
                log.warning("Spark package resolution failed (%s); resolving jars with Maven", first)
                jars = _maven_jars(coordinates)
                try:
                    spark = _embedded_session(settings, jars=jars)
                except Exception as second:
                    raise JobError(
                        f"could not start Spark with Delta ({second}); check that Java 17 is on "
                        f"PATH and that Maven Central is reachable"
                    ) from second
    spark.sparkContext.setLogLevel(spark_log_level(settings.log_level))
    if not under_spark_submit():
        _quiet_task_failures(spark)
    return spark


def _quiet_task_failures(spark: "SparkSession") -> None:
    """Embedded runs: a failed task is reported once, by batchrec's one-line error, not by Spark too."""
    try:
        jvm = spark.sparkContext._jvm
        off = jvm.org.apache.logging.log4j.Level.OFF
        for name in TASK_FAILURE_LOGGERS:
            jvm.org.apache.logging.log4j.core.config.Configurator.setLevel(name, off)
    except Exception as exc:  # a different logging backend: Spark's lines stay, nothing breaks
        log.debug("could not quiet Spark's task-failure logging: %s", exc)


def spark_log_level(level: str) -> str:
    """Spark's spelling of a log level: upper case, and WARN for Python's WARNING."""
    upper = level.strip().upper()
    return "WARN" if upper == "WARNING" else upper


def _manifest_path(coordinates: list[str]) -> Path:
    digest = hashlib.sha1(",".join(sorted(coordinates)).encode()).hexdigest()[:12]
    return cache_dir() / f"resolved-{digest}.txt"


def _cached_jars(manifest: Path) -> list[str]:
    """Jar paths recorded by an earlier successful resolution, if every one is still there."""
    if not manifest.is_file():
        return []
    jars = [line.removeprefix("file://") for line in manifest.read_text().split() if line]
    return jars if jars and all(os.path.isfile(j) for j in jars) else []


def _embedded_session(settings: SparkSettings, packages: Optional[list[str]] = None,
                      jars: Optional[list[str]] = None) -> "SparkSession":
    """The embedded session; the JVM is started with its console filtered (no incubator warning,
    no Ivy report unless resolution fails: ``batchrec.jvm_console``)."""
    from batchrec import jvm_console

    builder = _embedded_builder(settings, packages=packages, jars=jars)
    jvm_console.launch_gateway(builder._options)
    return builder.getOrCreate()


def _embedded_builder(
    settings: SparkSettings, packages: Optional[list[str]] = None, jars: Optional[list[str]] = None
):
    from pyspark.sql import SparkSession

    ivy = settings.ivy_dir or str(cache_dir() / "ivy")
    # Executors must run this interpreter (numpy, pyarrow), not whatever python3 is on PATH.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    java_opts = f"-Dlog4j.configurationFile=file:{LOG4J_FILE}"
    builder = (
        SparkSession.builder.master(settings.master)
        .appName(settings.app_name)
        .config("spark.driver.memory", settings.driver_memory)
        .config("spark.driver.extraJavaOptions", java_opts)
        .config("spark.sql.shuffle.partitions", str(settings.shuffle_partitions))
        # Delta rebuilds a table's state from its log in 50 tasks by default, sized for clusters;
        # an embedded session has a few cores, where the tasks' overhead is most of the time.
        .config(DELTA_SNAPSHOT_PARTITIONS, str(settings.shuffle_partitions))
        .config("spark.sql.extensions", DELTA_EXTENSION)
        .config("spark.sql.catalog.spark_catalog", DELTA_CATALOG)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.jars.ivy", ivy)
    )
    for key, value in settings.conf.items():
        builder = builder.config(key, value)
    if packages:
        builder = builder.config("spark.jars.packages", ",".join(packages))
    if jars:
        builder = builder.config("spark.jars", ",".join(jars))
    return builder


def _maven_jars(coordinates: list[str]) -> list[str]:
    """Resolve ``coordinates`` and their runtime dependencies with Maven into the cache folder."""
    target = cache_dir() / "jars"
    existing = sorted(str(p) for p in target.glob("*.jar")) if target.is_dir() else []
    if existing:
        return existing
    mvn = shutil.which("mvn")
    if mvn is None:
        raise JobError("Spark could not resolve the Delta jars and Maven (mvn) is not installed")
    target.mkdir(parents=True, exist_ok=True)
    deps = "".join(
        "<dependency><groupId>{}</groupId><artifactId>{}</artifactId><version>{}</version>"
        "</dependency>".format(*c.split(":"))
        for c in coordinates
    )
    pom = (
        '<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
        "<groupId>batchrec</groupId><artifactId>jars</artifactId><version>1</version>"
        f"<dependencies>{deps}</dependencies></project>"
    )
    (target / "pom.xml").write_text(pom)
    # Scala and Spark come with pyspark; copying them again would put two versions on the classpath.
    subprocess.run(
        [mvn, "-q", "-f", str(target / "pom.xml"), "dependency:copy-dependencies",
         f"-DoutputDirectory={target}", "-DincludeScope=runtime",
         "-DexcludeGroupIds=org.scala-lang,org.apache.spark"],
        check=True,
    )
    return sorted(str(p) for p in target.glob("*.jar"))


@contextlib.contextmanager
def scoped_conf(spark: "SparkSession", values: dict) -> Iterator[None]:
    """Set runtime SQL properties for the body and restore the previous values afterwards, so a job
    leaves no setting behind in a session it shares (tests, notebooks, a pipeline of jobs)."""
    conf = spark.conf
    missing = object()
    before = {key: conf.get(key, None) if conf.get(key, None) is not None else missing for key in values}
    for key, value in values.items():
        conf.set(key, str(value))
    try:
        yield
    finally:
        for key, value in before.items():
            if value is missing:
                conf.unset(key)
            else:
                conf.set(key, value)


@contextlib.contextmanager
def scoped_checkpoint_dir(spark: "SparkSession", directory: Optional[str]) -> Iterator[None]:
    """Use ``directory`` as the SparkContext's checkpoint directory for the body, then restore the
    previous one (or none): checkpoints of one job never land in another job's folder."""
    context = spark.sparkContext
    if directory is None:
        yield
        return
    previous = context.getCheckpointDir()
    context.setCheckpointDir(directory)
    try:
        yield
    finally:
        jvm_context = context._jsc.sc()
        # checkpointDir is a Scala var; its setter is the only way back to "no checkpoint directory".
        getattr(jvm_context, "checkpointDir_$eq")(context._jvm.scala.Option.apply(previous))
